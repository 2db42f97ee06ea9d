"""``semcorr video``: track points given on one frame through a video (:func:`semcorr.video.run_video`)."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..settings import ON_ERROR
from .options import (
    add_match_options,
    add_model_options,
    add_points_options,
    add_threads_option,
    given,
    match_settings,
    model_arguments,
    points_from,
    warn_random_weights,
)

TRACK_OPTIONS = ("source_frame", "batch_size", "cycle_tolerance", "max_frames", "on_error")


def run_video(args: argparse.Namespace) -> int:
    from ..runtime import set_threads
    from ..video.tracking import TrackSettings
    from ..video.tracking import run_video as track

    points = points_from(args)
    if not (args.out or args.tracks):
        raise InputError("nothing to write: give --out OUT.mp4 and/or --tracks TRACKS.json|.csv")
    set_threads(args.threads)
    settings = TrackSettings(match=match_settings(args), **given(args, TRACK_OPTIONS))
    summary = track(
        args.video,
        points,
        out=args.out,
        tracks=args.tracks,
        settings=settings,
        compile=args.compile,
        progress=not args.quiet,
        **model_arguments(args),
    )
    label = summary["model"] + (" (random weights)" if summary["random_weights"] else "")
    print(
        f"tracked {len(points)} point(s) through {summary['frames']} frames in {summary['seconds']:.2f} s: "
        f"{summary['fps']:.2f} frames/s end to end ({label}, {summary['precision']}, on {summary['device']}; "
        f"model setup {summary['setup_seconds']:.1f} s not counted)"
    )
    if summary["random_weights"]:
        warn_random_weights("the tracks carry")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    video = commands.add_parser("video", help="track points given on one frame through a video")
    video.add_argument("video", help="input video file")
    add_points_options(video, "the source frame")
    video.add_argument("--frame", dest="source_frame", type=int, help="source frame index, 0-based (default 0)")
    video.add_argument("--out", help="annotated output video (e.g. tracked.mp4)")
    video.add_argument("--tracks", help="tracks file: .json, or .csv (frame, point, x, y, confidence, ...)")
    video.add_argument("--batch-size", type=int, help="frames per batch (default 8)")
    video.add_argument("--max-frames", type=int, help="stop after this many frames")
    video.add_argument(
        "--cycle-tolerance", type=float, help="confidence scale: fraction of the frame's longer side (default 0.05)"
    )
    video.add_argument(
        "--on-error",
        choices=ON_ERROR,
        help="a frame that cannot be decoded (a damaged or cut file) "
        "is reported and skipped (default skip) or stops the run",
    )
    video.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(video)
    for action in video._actions:
        if action.dest == "precision":
            action.help = "default: bf16 autocast where the hardware has native bf16 (faster), else fp32"
    add_match_options(video)
    video.add_argument("--compile", action="store_true", help="torch.compile the model (slow first batch)")
    add_threads_option(video)
    video.set_defaults(run=run_video)
