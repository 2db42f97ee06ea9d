"""The parser every ``semcorr`` command uses, and the two argument actions that need it.

:class:`Parser` differs from :class:`argparse.ArgumentParser` in four ways, the same on every
supported Python:

* errors are one line (no usage block), exit status 2;
* long options are never abbreviated (``--pairs`` is not taken for ``--pairs-per-step``);
* a token that starts with a minus sign and a digit (``-5,10``, ``-.5,3``, ``-1e-3``) is a value, not
  an option (Python 3.13's rule, here for every version);
* image paths may follow ``--points`` (:class:`PointsAction` hands them back to the positional
  arguments).

:class:`OldSpelling` keeps an option's earlier spelling working, hidden from ``--help``, with one
warning per run (the table of renamed options is :data:`semcorr.cli.options.RENAMED_OPTIONS`).

Standard library only, so the rules can be checked on every Python version without the package's
dependencies.
"""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import Any, NoReturn

NEGATIVE_NUMBER = re.compile(r"-\.?\d")  # matched at the start of a token
IMAGES_AFTER_POINTS = "images_after_points"  # where PointsAction leaves the tokens that are not points
FILE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".webp",
        ".tif",
        ".tiff",
        ".gif",
        ".mp4",
        ".mkv",
        ".mov",
        ".avi",
        ".webm",
        ".json",
        ".txt",
        ".csv",
    }
)


class Parser(argparse.ArgumentParser):
    """An argument parser with semcorr's rules (see the module); its subparsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER  # argparse's own check, with Python 3.13's rule

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")

    def parse_known_args(  # type: ignore[override]  # one signature for typeshed's overloads
        self,
        args: Sequence[str] | None = None,
        namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        """argparse's parse, then the image paths that followed ``--points`` given to the positional
        arguments still missing, in order."""
        if not any(isinstance(action, PointsAction) for action in self._actions):
            return super().parse_known_args(args, namespace)
        positionals = [action for action in self._actions if not action.option_strings and action.nargs is None]
        for action in positionals:  # argparse would say they are missing before they are handed over
            action.required = False
        try:
            parsed, extras = super().parse_known_args(args, namespace)
        finally:
            for action in positionals:
                action.required = True
        handed = list(getattr(parsed, IMAGES_AFTER_POINTS, None) or [])
        if hasattr(parsed, IMAGES_AFTER_POINTS):
            delattr(parsed, IMAGES_AFTER_POINTS)
        for action in positionals:
            if getattr(parsed, action.dest, None) is None and handed:
                setattr(parsed, action.dest, handed.pop(0))
        missing = [action.metavar or action.dest for action in positionals if getattr(parsed, action.dest) is None]
        if missing:
            self.error(f"the following arguments are required: {', '.join(map(str, missing))}")
        return parsed, extras + handed


def looks_like_point(token: str) -> bool:
    """Whether a token after ``--points`` is a point rather than an image path (a path has a ``/``
    or an image, video or list file's suffix)."""
    return "/" not in token and PurePath(token).suffix.lower() not in FILE_SUFFIXES


class PointsAction(argparse.Action):
    """``--points X,Y ...`` (``nargs="+"``, extended over repeated options): the leading tokens that
    look like points (:func:`looks_like_point`); the tokens from the first that does not are image
    paths, handed back to the positional arguments by :class:`Parser`."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        tokens = [values] if isinstance(values, str) else list(values)
        count = next((index for index, token in enumerate(tokens) if not looks_like_point(token)), len(tokens))
        if count == 0:
            raise argparse.ArgumentError(self, "expected at least one argument")
        setattr(namespace, self.dest, list(getattr(namespace, self.dest, None) or []) + tokens[:count])
        if tokens[count:]:
            handed = list(getattr(namespace, IMAGES_AFTER_POINTS, None) or [])
            setattr(namespace, IMAGES_AFTER_POINTS, handed + tokens[count:])


class OldSpelling(argparse.Action):
    """An option's earlier spelling: hidden from ``--help``; the first use in a run warns (a
    :class:`FutureWarning`, since end users read it) and every use does what the new spelling does.

    Args:
        target: the new option's action; the value goes to it unless ``fields`` is given.
        fields: maps the value given to ``{dest: value}`` of the new options (an old option whose
            meaning depended on its value, e.g. a file or a benchmark name); destinations whose value
            is their default are left alone.
        until: the release that drops the old spelling.
    """

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        target: argparse.Action,
        fields: Callable[[str], dict[str, Any]] | None = None,
        until: str = "",
        **kwargs: Any,
    ) -> None:
        kind: Any = target.type
        super().__init__(
            option_strings,
            dest,
            nargs=target.nargs,
            type=kind,
            choices=target.choices,
            metavar=target.metavar,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
        self.target, self.fields, self.until, self.warned = target, fields, until, False

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        old, new = self.option_strings[0], self.target.option_strings[0]
        if self.fields is None:
            spelled = f"{old} is now {new}"
            self.target(parser, namespace, values, new)
        else:
            defaults = {action.dest: action.default for action in parser._actions}
            fields = {name: value for name, value in self.fields(values).items() if value != defaults.get(name)}
            for name, value in fields.items():
                setattr(namespace, name, value)
            if list(fields) == [self.target.dest] and fields[self.target.dest] == values:
                spelled = f"{old} is now {new}"
            else:
                spelled = f"{old} {values} is now " + " ".join(
                    f"--{name.replace('_', '-')} {value}" for name, value in fields.items()
                )
        if not self.warned:
            self.warned = True
            warnings.warn(f"{spelled}; the old spelling works until semcorr {self.until}", FutureWarning, stacklevel=2)


def add_old_spelling(
    parser: argparse.ArgumentParser,
    old: str,
    new: str,
    *,
    until: str,
    fields: Callable[[str], dict[str, Any]] | None = None,
) -> None:
    """Give ``parser``'s option ``new`` its earlier spelling ``old`` (:class:`OldSpelling`), in the
    same mutually exclusive group when ``new`` is in one (so a required group is satisfied by it)."""
    target = next((action for action in parser._actions if new in action.option_strings), None)
    if target is None:
        raise ValueError(f"{parser.prog} has no option {new}")
    container: Any = next(
        (group for group in parser._mutually_exclusive_groups if target in group._group_actions), parser
    )
    container.add_argument(old, action=OldSpelling, dest=target.dest, target=target, fields=fields, until=until)
