"""The ``semcorr`` parser and :func:`main`.

Errors a user can fix (:class:`~semcorr.errors.SemcorrError`) are printed as one line and exit
with status 1; ``--debug`` shows the traceback. Argument errors exit with status 2 (argparse).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import __version__
from ..errors import SemcorrError
from . import bench, cache, convert, evaluate, export, extract, match, segment, threed, train, video

# Each registers its commands on the subparsers; in the order `semcorr --help` lists them.
COMMAND_GROUPS = (match, evaluate, extract, cache, train, threed, video, segment, bench, export, convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semcorr", description="Semantic correspondence between images.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--version", action="version", version=f"semcorr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``semcorr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SemcorrError as error:
        if args.debug:
            raise
        print(f"semcorr: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("semcorr: interrupted", file=sys.stderr)
        return 130
