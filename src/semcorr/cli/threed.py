"""``semcorr make-3d-pairs ROOT --out FILE``: :func:`semcorr.threed.make_3d_pairs`."""

from __future__ import annotations

import argparse
import json


def run_make_3d_pairs(args: argparse.Namespace) -> int:
    from ..threed.correspondence import PairSettings
    from ..threed.generate import make_3d_pairs

    settings = PairSettings(
        frames=args.frames,
        depth_tolerance=args.depth_tolerance,
        nms_radius=args.nms_radius,
        nms_in_target=not args.nms_source_only,
    )
    summary = make_3d_pairs(
        args.root,
        args.out,
        format=args.format,
        settings=settings,
        strict=args.strict,
        overwrite=args.overwrite,
        max_sequences=args.max_sequences,
        progress=not args.quiet,
        categories=args.category,
        subset=args.subset,
        split=args.split,
        min_quality=args.min_quality,
        mask_threshold=args.mask_threshold,
        use_masks=False if args.no_masks else None,
    )
    per_pair = summary["correspondences"] / summary["pairs"] if summary["pairs"] else 0.0
    per_sequence = summary["seconds_per_sequence"]
    print(
        f"{summary['out']}: {summary['in_file']} sequences in the file; this run wrote {summary['written']} "
        f"({summary['pairs']} pairs, {per_pair:.0f} correspondences per pair"
        + (f", {per_sequence:.2f} s per sequence" if per_sequence is not None else "")
        + f"), skipped {summary['skipped']}, found {summary['already_done']} already done"
    )
    if args.summary:
        print(json.dumps(summary))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "make-3d-pairs",
        help="exact correspondences between views of posed RGB-D sequences (CO3D v2, RGB-D folders)",
        description="Per sequence, take evenly spaced frames (the first is the source), lift the source's foreground "
        "pixels with their depth to 3D, project them into every other frame, keep those the target's "
        "depth and mask confirm (occlusion check), thin them to points at least --nms-radius pixels "
        "apart, and write them to an HDF5 pair file. Resumable: run it again after an interruption.",
    )
    parser.add_argument(
        "root", help="a CO3D v2 folder (or one category of it) or posed RGB-D folder(s) with cameras.json"
    )
    parser.add_argument("--out", required=True, help="the HDF5 pair file to write (or to add to)")
    parser.add_argument("--format", choices=["auto", "co3d", "rgbd"], default="auto", help="default: auto-detect")
    parser.add_argument(
        "--frames", type=int, default=4, help="frames per sequence, evenly spaced; the first is the source (default 4)"
    )
    parser.add_argument(
        "--depth-tolerance",
        type=float,
        default=0.05,
        help="occlusion check: keep a point where |z - target depth| <= this * z (default 0.05)",
    )
    parser.add_argument(
        "--nms-radius",
        type=float,
        default=10.0,
        help="kept points are at least this many pixels apart; 0 keeps all (default 10)",
    )
    parser.add_argument(
        "--nms-source-only",
        action="store_true",
        help="enforce --nms-radius in the source image only (default: in both images)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="stop at a sequence that cannot be used (default: skip it with a warning)"
    )
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming --out")
    parser.add_argument("--max-sequences", type=int, metavar="N", help="generate at most N new sequences this run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--summary", action="store_true", help="also print the run's summary as JSON")
    co3d = parser.add_argument_group("CO3D options")
    co3d.add_argument("--category", action="append", help="only this category (repeatable)")
    co3d.add_argument("--subset", help="only frames of this set list, e.g. manyview_dev_0")
    co3d.add_argument("--split", help="with --subset: only this split (train, val, test)")
    co3d.add_argument("--min-quality", type=float, help="skip sequences with a lower viewpoint_quality_score")
    co3d.add_argument("--mask-threshold", type=float, help="foreground where P(foreground) >= this (default 0.5)")
    co3d.add_argument("--no-masks", action="store_true", help="ignore the foreground masks")
    parser.set_defaults(run=run_make_3d_pairs)
