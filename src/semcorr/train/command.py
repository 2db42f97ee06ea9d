"""``semcorr distill`` and ``semcorr finetune-3d``: thin layers over :func:`semcorr.train.distill`
and :func:`semcorr.train.finetune`. Every field of their config dataclass is an option; heavy
imports happen only when a command runs."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

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
_FINETUNE_HELP = {
    **_HELP,
    "pairs": "a pair file of `semcorr make-3d-pairs`, or a benchmark name (spair) for its labelled keypoint pairs",
    "data_root": "with a benchmark name in --pairs: its folder",
    "split": "with a benchmark name in --pairs: the split",
    "adapter": "start from this adapter (RUN/adapter of `semcorr distill`); default: the plain backbone",
    "beta": "inverse temperature of the soft-argmax over the cosine similarity map",
    "points_per_pair": "use at most this many correspondences of a pair per step (drawn at random)",
    "jitter": "std of Gaussian noise on the target points, as a fraction of the target image's longer side",
    "lr_decay": "lr factor from --lr-decay-epoch on (1: constant)",
    "lora_rank": "rank of a new adapter (a given --adapter brings its own)",
}


def _config(config_class: type, args: argparse.Namespace) -> Any:
    return config_class(**{field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)})


def _report(adapter: Any, random_weights: bool) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"adapter written to {adapter}; use it with: semcorr match --model student --adapter {adapter} ...")
        if random_weights:
            print("semcorr: warning: random weights; the adapter carries no meaning", file=sys.stderr)


def _run_distill(args: argparse.Namespace) -> int:
    from . import DistillConfig, distill

    config = _config(DistillConfig, args)
    _report(distill(config, args.out).adapter, config.random_weights)
    return 0


def _run_finetune(args: argparse.Namespace) -> int:
    from . import FinetuneConfig, finetune

    config = _config(FinetuneConfig, args)
    _report(finetune(config, args.out).adapter, config.random_weights)
    return 0


def add_config_options(command: argparse.ArgumentParser, config_class: type, help_texts: dict[str, str],
                       required: frozenset[str] = frozenset()) -> None:
    """One option per field of a config dataclass: ``--no-X`` for a true bool, ``--X`` for a false
    one, typed ``--X VALUE`` otherwise (``required`` fields must be given)."""
    for field in dataclasses.fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        help_text = help_texts.get(field.name, field.name.replace("_", " "))
        if isinstance(default, bool):
            if default:
                command.add_argument("--no-" + field.name.replace("_", "-"), dest=field.name,
                                     action="store_false", help=f"turn off: {help_text}")
            else:
                command.add_argument(flag, action="store_true", help=help_text)
        elif field.name == "precision":
            command.add_argument(flag, choices=["auto", "fp32", "bf16"], default=default, help=help_text)
        elif field.name in required:
            command.add_argument(flag, required=True, help=help_text)
        else:
            kind = type(default) if default is not None else str
            command.add_argument(flag, type=kind, default=default, help=f"{help_text} (default {default})")


def add_distill_command(commands: argparse._SubParsersAction) -> None:
    from .distill import DistillConfig

    command = commands.add_parser(
        "distill", help="distill teacher features into the LoRA student (resumable; torchrun for several GPUs)",
        description="Train the student's LoRA adapter on unlabeled images against cached (or live) teacher "
                    "features. Rerun with the same --out to resume; launch with torchrun for several GPUs.")
    command.add_argument("--out", required=True, help="the run folder (config, checkpoint, metrics, adapter)")
    add_config_options(command, DistillConfig, _HELP)
    command.set_defaults(run=_run_distill)


def add_finetune_command(commands: argparse._SubParsersAction) -> None:
    from .finetune import FinetuneConfig

    command = commands.add_parser(
        "finetune-3d",
        help="refine the student on 3D pairs or labelled keypoints (resumable; torchrun for several GPUs)",
        description="Refine the student's LoRA adapter on known correspondences: a pair file of `semcorr "
                    "make-3d-pairs` (the 3D augmentation), or a benchmark's labelled keypoint pairs (--pairs spair "
                    "--data-root DIR --split trn: the supervised setting). Loss: the distance between each source "
                    "point's soft-argmax match and its target point, as a fraction of the target image's longer "
                    "side. Rerun with the same --out to resume; launch with torchrun for several GPUs.")
    command.add_argument("--out", required=True, help="the run folder (config, checkpoint, metrics, adapter)")
    add_config_options(command, FinetuneConfig, _FINETUNE_HELP, required=frozenset({"pairs"}))
    command.set_defaults(run=_run_finetune)
