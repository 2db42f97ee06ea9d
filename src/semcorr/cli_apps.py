"""Registrars of the ``video``, ``segment`` and ``bench`` commands (see :data:`semcorr.cli.COMMANDS`).

Kept light: torch and the models are imported only inside the functions that run a command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _set_threads(args: argparse.Namespace) -> None:
    """torch.set_num_threads only when the user asked (never at import)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _add_speed_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (slow first batch)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


def _video(args: argparse.Namespace) -> int:
    from .cli import _parse_point, extractor_overrides, match_settings, read_points_file
    from .errors import InputError
    from .video import TrackSettings, run_video

    if bool(args.points) == bool(args.points_file):
        raise InputError("give the points on the source frame with either --points x,y ... or --points-file FILE")
    if not (args.out or args.tracks):
        raise InputError("nothing to write: give --out OUT.mp4 and/or --tracks TRACKS.json|.csv")
    _set_threads(args)
    points = [_parse_point(p) for p in args.points] if args.points else read_points_file(args.points_file)
    settings = TrackSettings(source_frame=args.frame, batch_size=args.batch_size, match=match_settings(args),
                             cycle_tolerance=args.cycle_tolerance, max_frames=args.max_frames)
    summary = run_video(args.video, points, out=args.out, tracks=args.tracks, model=args.model, settings=settings,
                        weights=args.weights, random_weights=args.random_weights, device=args.device,
                        compile=args.compile, progress=not args.quiet, **extractor_overrides(args))
    label = summary["model"] + (" (random weights)" if summary["random_weights"] else "")
    print(f"tracked {len(points)} point(s) through {summary['frames']} frames in {summary['seconds']:.2f} s: "
          f"{summary['fps']:.2f} frames/s end to end ({label}, {summary['precision']}, on {summary['device']}; "
          f"model setup {summary['setup_seconds']:.1f} s not counted)")
    if summary["random_weights"]:
        print("semcorr: warning: random weights; the tracks carry no meaning", file=sys.stderr)
    return 0


def add_video_command(commands: argparse._SubParsersAction) -> None:
    from .cli import DEFAULT_MODEL, add_match_options, add_model_options

    video = commands.add_parser("video", help="track points given on one frame through a video")
    video.add_argument("video", help="input video file")
    video.add_argument("--points", nargs="+", metavar="X,Y", help="points on the source frame, in its pixels")
    video.add_argument("--points-file", help="JSON file: [[x, y], ...] or {\"points\": [...]}")
    video.add_argument("--frame", type=int, default=0, help="source frame index, 0-based (default 0)")
    video.add_argument("--out", help="annotated output video (e.g. tracked.mp4)")
    video.add_argument("--tracks", help="tracks file: .json, or .csv (frame, point, x, y, confidence, ...)")
    video.add_argument("--batch-size", type=int, default=8, help="frames per batch (default 8)")
    video.add_argument("--max-frames", type=int, help="stop after this many frames")
    video.add_argument("--cycle-tolerance", type=float, default=0.05,
                       help="confidence scale: fraction of the frame's longer side (default 0.05)")
    video.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(video, DEFAULT_MODEL)
    for action in video._actions:
        if action.dest == "precision":
            action.help = "default: bf16 autocast where the hardware has native bf16 (faster), else fp32"
    add_match_options(video)
    _add_speed_options(video)
    video.set_defaults(run=_video)


def _segment(args: argparse.Namespace) -> int:
    from .cli import extractor_overrides
    from .segment import SegmentSettings, run_segment

    _set_threads(args)
    settings = SegmentSettings(grid=args.grid or None, restarts=args.restarts, seed=args.seed,
                               batch_size=args.batch_size)
    paths = run_segment(args.images, args.out, model=args.model, settings=settings, weights=args.weights,
                        random_weights=args.random_weights, device=args.device, **extractor_overrides(args))
    for image, path in zip(args.images, paths):
        print(f"{image} -> {path}")
    if args.random_weights:
        print("semcorr: warning: random weights; the masks carry no meaning", file=sys.stderr)
    return 0


def add_segment_command(commands: argparse._SubParsersAction) -> None:
    from .cli import DEFAULT_MODEL, add_model_options

    segment = commands.add_parser("segment", help="zero-shot foreground masks (k-means, k=2, on features)")
    segment.add_argument("images", nargs="+", help="input images")
    segment.add_argument("--out", required=True, help="folder for the masks (<image stem>.png, 0/255)")
    segment.add_argument("--grid", type=int, default=0, help="cluster on features upsampled to this grid "
                         "(default 0: the native grid)")
    segment.add_argument("--restarts", type=int, default=4, help="k-means restarts (default 4)")
    segment.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    segment.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    segment.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    add_model_options(segment, DEFAULT_MODEL)
    segment.set_defaults(run=_segment)


def _bench(args: argparse.Namespace) -> int:
    from .bench import BenchSettings, format_table, run_bench

    _set_threads(args)
    settings = BenchSettings(models=tuple(args.models), input_sizes=tuple(args.sizes or ()),
                             batch_sizes=tuple(args.batch_sizes), precisions=tuple(args.precision),
                             device=args.device, repeats=args.repeats, warmup=args.warmup,
                             random_weights=args.random_weights, reference=args.reference, compile=args.compile,
                             interleave=args.interleave, adapter=args.adapter)
    result = run_bench(settings, progress=not args.quiet)
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="images/s, latency, peak memory and parameters per model")
    bench.add_argument("--models", nargs="+", default=["baseline", "dinov2-b-reg"], help="preset names")
    bench.add_argument("--sizes", nargs="+", type=int, help="input sizes (default: each model's own)")
    bench.add_argument("--batch-sizes", nargs="+", type=int, default=[1], help="default 1")
    bench.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "fp16"], default=["fp32"])
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    bench.add_argument("--repeats", type=int, default=5, help="timed calls per configuration (median; default 5)")
    bench.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    bench.add_argument("--random-weights", action="store_true", help="untrained models: same cost, no download")
    bench.add_argument("--reference", help="model to compare throughput with (default: student if registered, "
                       "else dinov2-b-reg, the student's cost with LoRA merged)")
    bench.add_argument("--adapter", help="LoRA adapter folder for the models that take one (student); "
                       "without it the student keeps its zero-initialised LoRA layers unmerged")
    bench.add_argument("--interleave", action="store_true", help="time all configurations round-robin "
                       "(fairer on a loaded machine; keeps every model in memory)")
    bench.add_argument("--out", help="also write the results as JSON here")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_speed_options(bench)
    bench.set_defaults(run=_bench)
