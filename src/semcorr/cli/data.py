"""``semcorr data list|download|verify``: the benchmark and training datasets
(:func:`semcorr.data.install.download_dataset`, :func:`semcorr.data.verify.verify_dataset`)."""

from __future__ import annotations

import argparse


def run_list(args: argparse.Namespace) -> int:
    from ..data.catalog import DATASETS
    from ..data.verify import dataset_status

    for dataset in DATASETS.values():
        status = f"  [{dataset_status(dataset.name, args.root)}]" if args.root else ""
        print(
            f"{dataset.name:<22} {dataset.title}{status}\n{'':<22} size: {dataset.size}\n"
            f"{'':<22} licence: {dataset.licence}\n{'':<22} source: {dataset.source}"
        )
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ..data.install import download_dataset

    categories = [c for c in args.categories.split(",") if c.strip()] if args.categories else None
    path = download_dataset(
        args.name,
        args.root,
        mirror=args.mirror,
        categories=categories,
        keep_archives=args.keep_archives,
        progress=not args.no_progress,
        dry_run=args.dry_run,
    )
    print(path)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ..data.fetch import dataset_path
    from ..data.verify import verify_dataset

    verification = verify_dataset(args.name, args.root, load=args.load)
    for line in verification.lines():
        print(line)
    verification.require()
    print(f"{verification.dataset}: ok; loaders take {dataset_path(args.name, args.root)}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data",
        help="download and verify the benchmark and training datasets (SPair-71k, PF-WILLOW, ...)",
        description="Download the datasets semcorr's benchmarks and training read, resumably, checked against the "
        "publishers' checksums (else the first download's, recorded in ROOT/NAME.lock.json), extracted "
        "atomically into ROOT/NAME in the publishers' layout.",
    )
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the datasets: size, licence, source (and status under --root)")
    listing.add_argument("--root", metavar="DIR", help="also say which are downloaded into DIR")
    listing.set_defaults(run=run_list)

    download = actions.add_parser(
        "download",
        help="download, check and extract one dataset into ROOT/NAME",
        description="Prints the dataset's licence, size and destination, then downloads it (resuming cut "
        "transfers, also across runs), checks every file, extracts it into a temporary folder, runs "
        "its preparation step, checks the layout and renames the folder into place. Nothing is asked: "
        "downloading means accepting the licence printed first (see `semcorr data list`, --dry-run).",
    )
    download.add_argument("name", help="a dataset of `semcorr data list`")
    download.add_argument("--root", required=True, metavar="DIR", help="the data folder (created if needed)")
    download.add_argument(
        "--mirror",
        metavar="URL",
        help="base address serving NAME/FILE instead of the publishers (default: $SEMCORR_DATA_MIRROR)",
    )
    download.add_argument("--categories", metavar="A,B", help="co3d: the categories to download (or all)")
    download.add_argument(
        "--keep-archives",
        action="store_true",
        help="keep the downloaded archives in DIR/.downloads (verify then checks them too)",
    )
    download.add_argument("--dry-run", action="store_true", help="show licence, size and destination; download nothing")
    download.add_argument("--no-progress", action="store_true", help="no progress bars")
    download.set_defaults(run=run_download)

    verify = actions.add_parser(
        "verify",
        help="check a downloaded dataset: kept files' checksums, the layout's counts, the loaders",
        description="Checks, without the network, that the files recorded in ROOT/NAME.lock.json still have their "
        "SHA-256, and that the layout shows the publisher's counts (else those recorded at download): "
        "images, annotation files, pairs per split. --load also reads the benchmark splits with "
        "semcorr's loaders and compares the number of pairs.",
    )
    verify.add_argument("name", help="a dataset of `semcorr data list`")
    verify.add_argument("--root", required=True, metavar="DIR", help="the data folder given to `download`")
    verify.add_argument("--load", action="store_true", help="also load the benchmark splits with semcorr's loaders")
    verify.set_defaults(run=run_verify)
