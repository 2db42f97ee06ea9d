"""``semcorr reproduce distilldift --root DIR``: a paper's pipeline from nothing to its table, as one
resumable plan (:func:`semcorr.reproduce.reproduce`)."""

from __future__ import annotations

import argparse


def run_reproduce(args: argparse.Namespace) -> int:
    from ..reproduce.distilldift import reproduce

    reproduce(
        args.plan,
        args.root,
        tiny=args.tiny,
        data=args.data,
        stage=args.stage,
        device=args.device,
        plan_only=args.plan_only,
        progress=not args.no_progress,
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "reproduce",
        help="a paper's pipeline from the datasets to its table, as one resumable plan",
        description="Print the plan (stages, disk, rough time on the device), then run every stage that is not "
        "done yet: data, teacher cache, distillation, 3D pairs, refinement, evaluation under the "
        "authors' rule and semcorr's, and the paper's table beside ours. A stage whose outputs exist "
        "and are whole is skipped; a killed run resumes where it stopped.",
    )
    command.add_argument("plan", choices=["distilldift"], help="the paper")
    command.add_argument("--root", required=True, metavar="DIR", help="the run's folder (caches, runs, results)")
    command.add_argument(
        "--data",
        metavar="DIR",
        help="where the datasets are or go (default ROOT/data); with "
        "--tiny: the small real data of semcorr's tests (../shared/data)",
    )
    command.add_argument(
        "--tiny",
        action="store_true",
        help="the whole plan on small data in minutes on a CPU "
        "(random-weight and baseline models: the figures mean nothing about the method)",
    )
    command.add_argument("--stage", metavar="NAME", help="run this stage only (those before it must be done)")
    command.add_argument("--plan-only", action="store_true", help="print the plan and stop")
    command.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    command.add_argument("--no-progress", action="store_true", help="no progress bars")
    command.set_defaults(run=run_reproduce)
