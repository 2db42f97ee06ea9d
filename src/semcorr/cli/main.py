"""The ``semcorr`` parser and :func:`main`.

Errors a user can fix (:class:`~semcorr.errors.SemcorrError`) are printed as one line and exit
with status 1; so are the last-resort cases (a file the system refuses, memory running out, a bug),
with ``--debug`` for the traceback. Argument errors are one line too and exit with status 2
(:class:`~.parser.Parser`). Warnings, those of parsing included (an option's old spelling), are printed
as ``semcorr: warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from .. import __version__
from ..errors import SemcorrError
from . import (
    app,
    bench,
    cache,
    convert,
    data,
    evaluate,
    export,
    extract,
    labelstudio,
    match,
    reproduce,
    segment,
    threed,
    train,
    transfer,
    video,
)
from .options import add_renamed_options
from .parser import Parser

# Each registers its commands on the subparsers; in the order `semcorr --help` lists them.
COMMAND_GROUPS = (
    match,
    transfer,
    app,
    labelstudio,
    evaluate,
    data,
    reproduce,
    extract,
    cache,
    train,
    threed,
    video,
    segment,
    bench,
    export,
    convert,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="semcorr", description="Semantic correspondence between images.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--version", action="version", version=f"semcorr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    add_renamed_options(commands)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    print(f"semcorr: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``semcorr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        try:
            return args.run(args)
        except Exception as error:
            if args.debug:
                raise
            print(f"semcorr: {_one_line(error)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            if args.debug:
                raise
            print("semcorr: interrupted", file=sys.stderr)
            return 130


def _one_line(error: Exception) -> str:
    """What the user reads: the message of an error they can fix, else what went wrong and how to see more."""
    if isinstance(error, SemcorrError):
        return f"error: {' '.join(str(error).split())}"
    if isinstance(error, MemoryError):
        return "error: out of memory; use a smaller --batch-size or --input-size"
    if isinstance(error, OSError) and error.filename:
        return f"error: {error.filename}: {error.strerror or error}"
    text = " ".join(str(error).split()) or "no message"
    return (
        f"internal error: {type(error).__name__}: {text} (rerun with --debug for the traceback, and please report it)"
    )
