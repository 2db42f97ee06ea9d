"""``semcorr match``, ``semcorr demo`` and ``semcorr models``."""

from __future__ import annotations

import argparse
import json

from .options import (
    add_match_options,
    add_model_options,
    add_points_options,
    match_settings,
    model_arguments,
    points_from,
    warn_random_weights,
)


def run_match(args: argparse.Namespace) -> int:
    from ..matching.matcher import match_images

    result = match_images(
        args.image_a,
        args.image_b,
        points_from(args),
        settings=match_settings(args),
        pose_align=args.pose_align,
        out=args.out,
        show=args.show,
        **model_arguments(args),
    )
    if not args.out:
        print(json.dumps(result, indent=2))
    if result["random_weights"]:
        warn_random_weights("the matches carry")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo as demo

    demo(out_dir=args.out_dir, **model_arguments(args))
    return 0


def list_models(args: argparse.Namespace) -> int:
    from ..features.registry import PRESETS

    width = max(len(name) for name in PRESETS)
    indent = " " * (width + 2)
    for name, preset in PRESETS.items():
        print(f"{name:<{width}}  {preset.description}")
        print(f"{indent}weights:  {preset.source}")
        print(f"{indent}licence:  {preset.licence}")
        print(f"{indent}headline: {preset.headline}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    match = commands.add_parser("match", help="find points of image A in image B")
    match.add_argument("image_a")
    match.add_argument("image_b")
    add_points_options(match, "image A")
    add_model_options(match)
    add_match_options(match)
    match.add_argument(
        "--pose-align",
        action="store_true",
        help="also match from mirrored image A if it agrees better with image B (GeoAware-SC)",
    )
    match.add_argument("--out", help="write the JSON here instead of stdout")
    match.add_argument("--show", metavar="PNG", help="also draw the matches side by side into this PNG")
    match.set_defaults(run=run_match)

    demo = commands.add_parser("demo", help="match parts between two bundled images; writes JSON and a PNG")
    add_model_options(demo)
    demo.add_argument("--out-dir", default="semcorr-demo", help="where to write matches.json and matches.png")
    demo.set_defaults(run=run_demo)

    commands.add_parser(
        "models",
        help="list the model presets: what each is, where its weights come from, their "
        "licence, and its paper's headline figure with the protocol it was measured under",
    ).set_defaults(run=list_models)
