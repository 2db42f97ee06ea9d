"""``semcorr segment``: zero-shot foreground masks (:func:`semcorr.segment.run_segment`)."""

from __future__ import annotations

import argparse

from .options import add_model_options, add_threads_option, given, model_arguments, warn_random_weights

SEGMENT_OPTIONS = ("grid", "restarts", "seed", "batch_size")


def run_segment(args: argparse.Namespace) -> int:
    from ..runtime import set_threads
    from ..segment.masks import SegmentSettings
    from ..segment.masks import run_segment as segment

    fields = given(args, SEGMENT_OPTIONS)
    if fields.get("grid") == 0:
        fields["grid"] = None
    settings = SegmentSettings(**fields)
    set_threads(args.threads)
    paths = segment(args.images, args.out, settings=settings, **model_arguments(args))
    for image, path in zip(args.images, paths):
        print(f"{image} -> {path}")
    if args.random_weights:
        warn_random_weights("the masks carry")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    segment = commands.add_parser("segment", help="zero-shot foreground masks (k-means, k=2, on features)")
    segment.add_argument("images", nargs="+", help="input images")
    segment.add_argument("--out", required=True, help="folder for the masks (<image stem>.png, 0/255)")
    segment.add_argument(
        "--grid", type=int, help="cluster on features upsampled to this grid (default 0: the native grid)"
    )
    segment.add_argument("--restarts", type=int, help="k-means restarts (default 4)")
    segment.add_argument("--seed", type=int, help="k-means seed (default 0)")
    segment.add_argument("--batch-size", type=int, help="images per batch (default 8)")
    add_threads_option(segment)
    add_model_options(segment)
    segment.set_defaults(run=run_segment)
