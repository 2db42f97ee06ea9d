"""``semcorr distill`` and ``semcorr finetune-3d``: :func:`semcorr.train.distill` and
:func:`semcorr.train.finetune`. Every field of their config is an option."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from ..settings import ON_ERROR
from ..train.config import TRAIN_PRECISIONS, DistillConfig, FinetuneConfig, TrainConfig
from .options import warn_random_weights

HELP = {
    "benchmark": "take the pairs from this benchmark (spair, pf-pascal, ...; with --data-root and --split)",
    "data_root": "with --benchmark: its folder",
    "split": "with --benchmark: the split",
    "weights": "student backbone: Hugging Face id, local folder or official DINOv2 .pth",
    "random_weights": "untrained student backbone (timing, tests)",
    "lr_decay_epoch": "multiply the lr by --lr-decay from this (0-based) epoch on",
    "lr_decay": "lr factor from --lr-decay-epoch on (1: constant)",
    "pairs_per_step": "pairs per optimiser step per process",
    "precision": "auto: bf16 autocast on GPU, fp32 on CPU",
    "device": "auto, cpu or cuda (each process takes cuda:LOCAL_RANK)",
    "checkpoint_every": "steps between checkpoints (also at each epoch's end)",
    "lora_rank": "rank of a new adapter",
    # distill
    "images": "folder of training images (recursive) or a text file listing them",
    "pair_list": "a text file of 'source target' image keys per line (default: retrieval pairing)",
    "teacher_cache": "teacher-feature cache filled by `semcorr cache-teacher` over the same images",
    "on_missing": "images the teacher cache does not hold stop the run (stop), or are left out and named (skip)",
    "teacher": "run this teacher preset live instead of a cache (e.g. teacher)",
    "teacher_weights": "weights of the live teacher preset",
    "neighbours": "k nearest neighbours of the retrieval pairing",
    # finetune-3d
    "pair_file": "a pair file of `semcorr make-3d-pairs` (or give --benchmark)",
    "adapter": "start from this adapter (RUN/adapter of `semcorr distill`); default: the plain backbone",
    "beta": "inverse temperature of the soft-argmax over the cosine similarity map",
    "points_per_pair": "use at most this many correspondences of a pair per step (drawn at random)",
    "jitter": "std of Gaussian noise on the target points, as a fraction of the target image's longer side",
}
CHOICES = {"precision": TRAIN_PRECISIONS, "on_missing": ON_ERROR}
# Pairs come from one source at most; finetune-3d needs one.
SOURCES = {DistillConfig: ("pair_list", "benchmark"), FinetuneConfig: ("pair_file", "benchmark")}


def add_config_options(command: argparse.ArgumentParser, config_class: type[TrainConfig]) -> None:
    """One option per field of a config dataclass: ``--no-X`` for a true bool, ``--X`` for a false
    one, typed ``--X VALUE`` otherwise; the pair sources in a mutually exclusive group."""
    sources = SOURCES[config_class]
    group = command.add_mutually_exclusive_group(required=config_class is FinetuneConfig)
    for field in dataclasses.fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        help_text = HELP.get(field.name, field.name.replace("_", " "))
        target = group if field.name in sources else command
        if isinstance(default, bool):
            if default:
                target.add_argument(
                    "--no-" + field.name.replace("_", "-"),
                    dest=field.name,
                    action="store_false",
                    help=f"turn off: {help_text}",
                )
            else:
                target.add_argument(flag, action="store_true", help=help_text)
        elif field.name in CHOICES:
            target.add_argument(
                flag, choices=CHOICES[field.name], default=default, help=f"{help_text} (default {default})"
            )
        else:
            kind = type(default) if default is not None else str
            target.add_argument(flag, type=kind, default=default, help=f"{help_text} (default {default})")


def config_of(config_class: type[TrainConfig], args: argparse.Namespace) -> Any:
    """The config of the parsed options (it checks itself)."""
    return config_class(**{field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)})


def _report(adapter: Any, random_weights: bool) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"adapter written to {adapter}; use it with: semcorr match --model student --adapter {adapter} ...")
        if random_weights:
            warn_random_weights("the adapter carries")


def run_distill(args: argparse.Namespace) -> int:
    from ..train.distillation import distill

    config = config_of(DistillConfig, args)
    _report(distill(config, args.out).adapter, config.random_weights)
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from ..train.refinement import finetune

    config = config_of(FinetuneConfig, args)
    _report(finetune(config, args.out).adapter, config.random_weights)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "distill",
        help="distill teacher features into the LoRA student (resumable; torchrun for several GPUs)",
        description="Train the student's LoRA adapter on unlabeled images against cached (or live) teacher "
        "features. Rerun with the same --out to resume; launch with torchrun for several GPUs.",
    )
    command.add_argument("--out", required=True, help="the run folder (config, checkpoint, metrics, adapter)")
    add_config_options(command, DistillConfig)
    command.set_defaults(run=run_distill)

    command = commands.add_parser(
        "finetune-3d",
        help="refine the student on 3D pairs or labelled keypoints (resumable; torchrun for several GPUs)",
        description="Refine the student's LoRA adapter on known correspondences: a pair file of `semcorr "
        "make-3d-pairs` (--pair-file: the 3D augmentation), or a benchmark's labelled keypoint pairs "
        "(--benchmark spair --data-root DIR --split trn: the supervised setting). Loss: the distance "
        "between each source point's soft-argmax match and its target point, as a fraction of the "
        "target image's longer side. Rerun with the same --out to resume; launch with torchrun for "
        "several GPUs.",
    )
    command.add_argument("--out", required=True, help="the run folder (config, checkpoint, metrics, adapter)")
    add_config_options(command, FinetuneConfig)
    command.set_defaults(run=run_finetune)
