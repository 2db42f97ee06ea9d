"""``semcorr cache-teacher IMAGES --out DIR``: fill a teacher-feature cache (a thin layer over
:func:`semcorr.cache.cache_teacher`). Heavy imports happen only when the command runs."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any


def _member_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides of the SDXL-Turbo options for the ``teacher`` or ``sdxl-turbo`` preset."""
    sdxl = {name: getattr(args, name) for name in ("vae", "tiny_vae_weights") if getattr(args, name) is not None}
    if args.model == "sdxl-turbo":
        return sdxl
    if args.model != "teacher":
        if sdxl or args.sdxl_weights or args.dino_weights:
            raise_input(f"--vae, --tiny-vae-weights, --sdxl-weights and --dino-weights apply to the teacher and "
                        f"sdxl-turbo models, not {args.model}")
        return {}
    from ..features import TeacherConfig

    defaults = TeacherConfig()
    if args.sdxl_weights:
        sdxl["weights"] = args.sdxl_weights
    overrides = {"sdxl": dataclasses.replace(defaults.sdxl, **sdxl)} if sdxl else {}
    if args.dino_weights:
        overrides["dino"] = dataclasses.replace(defaults.dino, weights=args.dino_weights)
    return overrides


def raise_input(message: str) -> None:
    from ..errors import InputError

    raise InputError(message)


def _device(requested: str) -> str:
    """``auto`` under torchrun / accelerate: this process's GPU (``LOCAL_RANK``) when there is one."""
    import torch

    if requested == "auto" and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return requested


def _run(args: argparse.Namespace) -> int:
    from ..cli import extractor_overrides
    from ..features import build_extractor
    from . import cache_teacher, list_images, resolve_rank

    if args.model == "sdxl-turbo" and args.sdxl_weights:
        raise_input("use --weights for the sdxl-turbo model (--sdxl-weights is for the teacher)")
    rank, world_size = resolve_rank(args.rank, args.world_size)
    images = list_images(args.images, category_from_folder=args.category_from_folder)
    extractor = build_extractor(args.model, weights=args.weights, random_weights=args.random_weights,
                                device=_device(args.device), **extractor_overrides(args), **_member_overrides(args))
    if extractor.random_weights:
        print("semcorr: warning: random weights; the cached features carry no meaning", file=sys.stderr)
    report = cache_teacher(extractor, images, args.out, rank=rank, world_size=world_size,
                           batch_size=args.batch_size, on_error=args.on_error, progress=not args.no_progress)
    print(report.summary())
    return 0


def add_cache_teacher_command(commands: argparse._SubParsersAction) -> None:
    from ..cli import add_model_options

    command = commands.add_parser(
        "cache-teacher", help="cache a teacher's per-image features (fp16; resumable; several ranks)",
        description="Cache per-image teacher features in DIR: one fp16 safetensors file per image, written "
                    "atomically. Rerun to resume; run several processes (RANK/WORLD_SIZE, or --rank/--world-size) "
                    "to share the work.")
    command.add_argument("images", help="a folder of images (searched recursively) or a text file listing them")
    command.add_argument("--out", required=True, help="the cache folder")
    add_model_options(command, "teacher")
    command.add_argument("--sdxl-weights", help="teacher: SDXL-Turbo diffusers folder or Hugging Face id")
    command.add_argument("--dino-weights", help="teacher: DINOv2 folder, Hugging Face id or .pth file")
    command.add_argument("--vae", choices=["full", "tiny"], help="SDXL VAE: full (default) or TAESDXL")
    command.add_argument("--tiny-vae-weights", help="TAESDXL: taesdxl_encoder.safetensors, folder or hub id")
    command.add_argument("--category-from-folder", action="store_true",
                         help="prompt SDXL with 'a photo of a <parent folder name>' (default: neutral prompt)")
    command.add_argument("--rank", type=int, help="this process's rank (default: $RANK, else 0)")
    command.add_argument("--world-size", type=int, help="number of processes (default: $WORLD_SIZE, else 1)")
    command.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    command.add_argument("--on-error", choices=["skip", "stop"], default="skip",
                         help="an unreadable image is reported and skipped (default) or stops the run")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    command.set_defaults(run=_run)
