"""``semcorr distill --images DIR --teacher-cache DIR --out RUN``: a thin layer over
:func:`semcorr.train.distill`. Every :class:`DistillConfig` field is an option; heavy imports
happen only when the command runs."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

_HELP = {
    "images": "folder of training images (recursive) or a text file listing them",
    "pairs": "default: retrieval pairing; or a text file of 'source target' keys, or a SPair-71k root (trn pairs)",
    "teacher_cache": "teacher-feature cache filled by `semcorr cache-teacher` over the same images",
    "teacher": "run this teacher preset live instead of a cache (e.g. teacher)",
    "teacher_weights": "weights of the live teacher preset",
    "weights": "student backbone: Hugging Face id, local folder or official DINOv2 .pth",
    "random_weights": "untrained student backbone (timing, tests)",
    "lr_decay_epoch": "multiply the lr by --lr-decay from this (0-based) epoch on",
    "neighbours": "k nearest neighbours of the retrieval pairing",
    "pairs_per_step": "pairs per optimiser step per process",
    "precision": "auto: bf16 autocast on GPU, fp32 on CPU",
    "device": "auto, cpu or cuda (each process takes cuda:LOCAL_RANK)",
    "checkpoint_every": "steps between checkpoints (also at each epoch's end)",
}


def _run(args: argparse.Namespace) -> int:
    from . import DistillConfig, distill

    names = {field.name for field in dataclasses.fields(DistillConfig)}
    config = DistillConfig(**{name: getattr(args, name) for name in names})
    adapter = distill(config, args.out).adapter
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"adapter written to {adapter}; use it with: semcorr match --model student --adapter {adapter} ...")
        if config.random_weights:
            print("semcorr: warning: random weights; the adapter carries no meaning", file=sys.stderr)
    return 0


def add_distill_command(commands: argparse._SubParsersAction) -> None:
    from .distill import DistillConfig

    command = commands.add_parser(
        "distill", help="distill teacher features into the LoRA student (resumable; torchrun for several GPUs)",
        description="Train the student's LoRA adapter on unlabeled images against cached (or live) teacher "
                    "features. Rerun with the same --out to resume; launch with torchrun for several GPUs.")
    command.add_argument("--out", required=True, help="the run folder (config, checkpoint, metrics, adapter)")
    for field in dataclasses.fields(DistillConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        help_text = _HELP.get(field.name, field.name.replace("_", " "))
        if isinstance(default, bool):
            if default:
                command.add_argument("--no-" + field.name.replace("_", "-"), dest=field.name,
                                     action="store_false", help=f"turn off: {help_text}")
            else:
                command.add_argument(flag, action="store_true", help=help_text)
        elif field.name == "precision":
            command.add_argument(flag, choices=["auto", "fp32", "bf16"], default=default, help=help_text)
        else:
            kind = type(default) if default is not None else str
            command.add_argument(flag, type=kind, default=default, help=f"{help_text} (default {default})")
    command.set_defaults(run=_run)
