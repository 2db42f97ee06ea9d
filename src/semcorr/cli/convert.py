"""``semcorr convert-checkpoint``: the authors' DistillDIFT ``.ckpt`` -> a student folder
(:func:`semcorr.features.released.distilldift.convert_checkpoint`)."""

from __future__ import annotations

import argparse


def run_convert(args: argparse.Namespace) -> int:
    from ..features.released.distilldift import convert_checkpoint

    folder = convert_checkpoint(args.checkpoint, args.out)
    print(
        f"wrote {folder}; use it with --model distilldift-us --weights {folder} "
        "(distilldift-ws or distilldift-s for those files)"
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "convert-checkpoint",
        help="convert the authors' DistillDIFT .ckpt into a student folder",
        description="Convert an official DistillDIFT student checkpoint (distilled_us.ckpt, distilled_ws.ckpt, "
        "distilled_s.ckpt) exactly: backbone and LoRA, every key accounted for, read without importing "
        "or running anything from the file. The folder loads with --model distilldift-us --weights FOLDER.",
    )
    parser.add_argument("checkpoint", help="the authors' .ckpt file")
    parser.add_argument("--out", required=True, help="new folder to write (must not exist or be empty)")
    parser.set_defaults(run=run_convert)
