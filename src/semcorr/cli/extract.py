"""``semcorr extract IMAGES --out DIR``: dense features and global embeddings of a folder or list of
images into a feature store, with :func:`semcorr.extract.extract_features` (one process, one share
per torchrun rank, or a Ray cluster)."""

from __future__ import annotations

import argparse

from .options import (
    add_engine_options,
    add_model_options,
    extract_settings,
    model_spec,
    ray_settings,
    warn_random_weights,
)


def run_extract(args: argparse.Namespace) -> int:
    from ..extract.run import extract_features

    spec = model_spec(args)
    if spec.random_weights:
        warn_random_weights("the features carry")
    settings = extract_settings(args, embeddings=not args.no_embeddings)
    report = extract_features(
        args.images,
        args.out,
        model=spec,
        settings=settings,
        engine=args.engine,
        ray=ray_settings(args),
        rank=args.rank,
        world_size=args.world_size,
        progress=not args.no_progress,
    )
    print(report.summary())
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "extract",
        help="dense features and global embeddings of many images into a feature store (resumable; "
        "torchrun or Ray for several GPUs or machines)",
        description="Extract per-image dense features (fp16, (C, h, w)) and a global embedding (the class token, "
        "or the mean of the cells) of every image of a folder or list file into DIR: one safetensors "
        "file per image, written atomically. Rerun to resume. Several processes share the list under "
        "torchrun / accelerate launch (or --rank/--world-size); --engine ray runs it on a Ray cluster.",
    )
    command.add_argument("images", help="a folder of images (searched recursively) or a text file listing them")
    command.add_argument("--out", required=True, metavar="DIR", help="the store folder")
    add_model_options(command)
    command.add_argument("--no-embeddings", action="store_true", help="store the dense features only")
    add_engine_options(command)
    command.set_defaults(run=run_extract)
