"""The ``semcorr`` command: a thin layer over the Python API.

Errors a user can fix are printed as one line (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .cache.command import add_cache_teacher_command
from .checkpoint_command import add_convert_checkpoint_command
from .cli_apps import add_bench_command, add_segment_command, add_video_command
from .errors import InputError, SemcorrError
from .eval.command import add_eval_command
from .export.command import add_export_onnx_command
from .features.registry import DEFAULT_MODEL
from .threed.command import add_make_3d_pairs_command
from .train.command import add_distill_command, add_finetune_command


def _parse_point(text: str) -> list[float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--points: {text!r} is not an x,y pair (e.g. 120,45.5)") from None
    return [x, y]


def read_points_file(path: str | Path) -> list[list[float]]:
    """Points from JSON: ``[[x, y], ...]`` or ``{"points": [[x, y], ...]}``."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    points = data.get("points") if isinstance(data, dict) else data
    if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
        raise InputError(f"{path}: expected [[x, y], ...] or {{\"points\": [[x, y], ...]}}")
    return points


def add_model_options(parser: argparse.ArgumentParser, default_model: str) -> None:
    """--model, --weights, --random-weights, --device, and the extractor's --input-size,
    --resize-mode and --precision (left to the preset when not given)."""
    parser.add_argument("--model", default=default_model, help=f"extractor preset (default {default_model}; "
                        "see `semcorr models`)")
    parser.add_argument("--weights", help="Hugging Face id, local folder or checkpoint file for the model")
    parser.add_argument("--random-weights", action="store_true", help="untrained weights (timing and tests)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--input-size", type=int, help="input canvas side in pixels (default: the model's)")
    parser.add_argument("--resize-mode", choices=["square", "letterbox"], help="default square (the papers')")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="default fp32")
    parser.add_argument("--adapter", help="student only: a LoRA adapter folder (RUN/adapter of `semcorr distill`)")


def add_match_options(parser: argparse.ArgumentParser) -> None:
    """Options of :class:`~semcorr.matcher.MatchSettings`; read them back with :func:`match_settings`."""
    parser.add_argument("--grid", type=int, default=60, help="upsample features to this grid; 0: native (default 60)")
    parser.add_argument("--method", choices=["window_soft_argmax", "nearest"], default="window_soft_argmax")
    parser.add_argument("--window", type=int, default=11, help="soft-argmax window in cells (default 11)")
    parser.add_argument("--temperature", type=float, default=0.02, help="soft-argmax temperature (default 0.02)")


def match_settings(args: argparse.Namespace):
    """The :class:`~semcorr.matcher.MatchSettings` of parsed :func:`add_match_options` arguments."""
    from .matcher import MatchSettings

    return MatchSettings(grid=args.grid or None, method=args.method, window=args.window,
                         temperature=args.temperature)


def extractor_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("input_size", "resize_mode", "precision", "adapter")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _match(args: argparse.Namespace) -> int:
    from .matcher import Matcher
    from .viz import plot_matches

    if bool(args.points) == bool(args.points_file):
        raise InputError("give the source points with either --points x,y ... or --points-file FILE")
    points = [_parse_point(p) for p in args.points] if args.points else read_points_file(args.points_file)
    matcher = Matcher(args.model, weights=args.weights, random_weights=args.random_weights, device=args.device,
                      settings=match_settings(args), **extractor_overrides(args))
    result = matcher.match(args.image_a, args.image_b, points, pose_align=args.pose_align)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    if args.show:
        label = result["model"] + (" (random weights)" if result["random_weights"] else "")
        plot_matches(args.image_a, args.image_b, result["matches"], args.show, title=label)
    if result["random_weights"]:
        print("semcorr: warning: random weights; the matches carry no meaning", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.model, out_dir=args.out_dir, device=args.device, random_weights=args.random_weights,
             weights=args.weights, **extractor_overrides(args))
    return 0


def _models(args: argparse.Namespace) -> int:
    from .features import PRESETS

    width = max(len(name) for name in PRESETS)
    for name, preset in PRESETS.items():
        print(f"{name:<{width}}  {preset.description}")
    return 0


def add_match_command(commands: argparse._SubParsersAction) -> None:
    match = commands.add_parser("match", help="find points of image A in image B")
    match.add_argument("image_a")
    match.add_argument("image_b")
    match.add_argument("--points", nargs="+", metavar="X,Y", help="source points in image A's pixels")
    match.add_argument("--points-file", help="JSON file: [[x, y], ...] or {\"points\": [...]}")
    add_model_options(match, DEFAULT_MODEL)
    add_match_options(match)
    match.add_argument("--pose-align", action="store_true",
                       help="also match from mirrored image A if it agrees better with image B (GeoAware-SC)")
    match.add_argument("--out", help="write the JSON here instead of stdout")
    match.add_argument("--show", metavar="PNG", help="also draw the matches side by side into this PNG")
    match.set_defaults(run=_match)


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="match parts between two bundled images; writes JSON and a PNG")
    add_model_options(demo, DEFAULT_MODEL)
    demo.add_argument("--out-dir", default="semcorr-demo", help="where to write matches.json and matches.png")
    demo.set_defaults(run=_demo)


def add_models_command(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("models", help="list the model presets").set_defaults(run=_models)


# One function per subcommand. Modules that add commands import heavy code (models, data) only
# inside the function that runs the command, so `semcorr --help` and errors stay fast.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_match_command, add_demo_command, add_models_command, add_eval_command, add_cache_teacher_command,
    add_video_command, add_segment_command, add_bench_command, add_make_3d_pairs_command,
    add_distill_command, add_finetune_command, add_export_onnx_command, add_convert_checkpoint_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semcorr", description="Semantic correspondence between images.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SemcorrError as error:
        if args.debug:
            raise
        print(f"semcorr: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
