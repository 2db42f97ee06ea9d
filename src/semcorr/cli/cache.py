"""``semcorr cache-teacher IMAGES --out DIR``: fill a teacher-feature cache (a feature store of the
teacher's dense features) with :func:`semcorr.extract.extract_features` (one process, one share per
torchrun rank, or a Ray cluster)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..errors import InputError
from .options import (
    add_engine_options,
    add_model_options,
    extract_settings,
    model_spec,
    ray_settings,
    warn_random_weights,
)

MEMBER_OPTIONS = ("vae", "tiny_vae_weights")


def member_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides of the SDXL-Turbo and DINOv2 options for the ``teacher`` or ``sdxl-turbo`` preset."""
    from ..features.config import TeacherConfig

    sdxl = {name: getattr(args, name) for name in MEMBER_OPTIONS if getattr(args, name) is not None}
    if args.model == "sdxl-turbo":
        if args.sdxl_weights or args.dino_weights:
            raise InputError(
                "use --weights for the sdxl-turbo model (--sdxl-weights and --dino-weights are for the teacher)"
            )
        return sdxl
    if args.model != "teacher":
        if sdxl or args.sdxl_weights or args.dino_weights:
            raise InputError(
                f"--vae, --tiny-vae-weights, --sdxl-weights and --dino-weights apply to the teacher and "
                f"sdxl-turbo models, not {args.model}"
            )
        return {}
    defaults = TeacherConfig()
    if args.sdxl_weights:
        sdxl["weights"] = args.sdxl_weights
    overrides: dict[str, Any] = {"sdxl": dataclasses.replace(defaults.sdxl, **sdxl)} if sdxl else {}
    if args.dino_weights:
        overrides["dino"] = dataclasses.replace(defaults.dino, weights=args.dino_weights)
    return overrides


def run_cache_teacher(args: argparse.Namespace) -> int:
    from ..extract.run import extract_features
    from ..images import list_images

    spec = model_spec(args, **member_overrides(args))
    images = list_images(args.images, category_from_folder=args.category_from_folder)
    if spec.random_weights:
        warn_random_weights("the cached features carry")
    report = extract_features(
        images,
        args.out,
        model=spec,
        settings=extract_settings(args, embeddings=False),
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
        "cache-teacher",
        help="cache a teacher's per-image features (fp16; resumable; several ranks)",
        description="Cache per-image teacher features in DIR (a feature store, as `semcorr extract` writes, "
        "without embeddings): one fp16 safetensors file per image, written atomically. Rerun to resume; "
        "run several processes (torchrun, RANK/WORLD_SIZE, or --rank/--world-size) to share the work, "
        "or --engine ray on a Ray cluster.",
    )
    command.add_argument("images", help="a folder of images (searched recursively) or a text file listing them")
    command.add_argument("--out", required=True, metavar="DIR", help="the cache folder")
    add_model_options(command, "teacher")
    command.add_argument("--sdxl-weights", help="teacher: SDXL-Turbo diffusers folder or Hugging Face id")
    command.add_argument("--dino-weights", help="teacher: DINOv2 folder, Hugging Face id or .pth file")
    command.add_argument("--vae", choices=["full", "tiny"], help="SDXL VAE: full (default) or TAESDXL")
    command.add_argument("--tiny-vae-weights", help="TAESDXL: taesdxl_encoder.safetensors, folder or hub id")
    command.add_argument(
        "--category-from-folder",
        action="store_true",
        help="prompt SDXL with 'a photo of a <parent folder name>' (default: neutral prompt)",
    )
    add_engine_options(command)
    command.set_defaults(run=run_cache_teacher)
