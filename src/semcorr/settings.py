"""Settings that check themselves when they are built.

Every settings and config dataclass of semcorr (``MatchSettings``, ``ExtractorConfig``,
``PCKSettings``, ``TrackSettings``, ``SegmentSettings``, the training configs, ...) runs these
checks in its ``__post_init__``, so a bad value is refused where it is given, before any work,
with a :class:`~semcorr.errors.SettingError` that names the command-line option, the value, the
field and what is allowed::

    MatchSettings(window=10)
    SettingError: --window 10 (MatchSettings.window): must be an odd integer >= 1

A dataclass whose option is not ``--<field-name>`` says so in a ``OPTIONS`` class attribute
(``{"source_frame": "--frame"}``). Also here: the vocabularies several settings share.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any, Literal

from .errors import SettingError

ResizeMode = Literal["square", "letterbox"]
RESIZE_MODES: tuple[str, ...] = ("square", "letterbox")
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
OnError = Literal["skip", "stop"]
ON_ERROR: tuple[str, ...] = ("skip", "stop")


def option_of(owner: object, field: str) -> str:
    """The command-line option of ``owner``'s ``field``: ``OPTIONS[field]``, else ``--field-name``."""
    return getattr(type(owner), "OPTIONS", {}).get(field, "--" + field.replace("_", "-"))


def fail(owner: object, field: str, requirement: str, value: Any = None) -> SettingError:
    """The :class:`SettingError` of ``owner.field`` (its current value unless ``value`` is given)."""
    shown = getattr(owner, field) if value is None else value
    return SettingError(type(owner).__name__, field, option_of(owner, field), shown, requirement)


def _bounds(minimum: float | None, maximum: float | None, above: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum:g}, {maximum:g}]"
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    return (" " + " and ".join(parts)) if parts else ""


def check_int(
    owner: object,
    field: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    odd: bool = False,
    optional: bool = False,
    none_means: str = "",
) -> None:
    """``owner.field`` is an integer (not a bool) within the bounds, odd if asked; ``None`` where optional."""
    value = getattr(owner, field)
    if optional and value is None:
        return
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    ok = ok and (not odd or value % 2 == 1)
    if not ok:
        what = f"must be {'an odd' if odd else 'an'} integer{_bounds(minimum, maximum, None)}"
        raise fail(owner, field, what + (f", or None {none_means}".rstrip() if optional else ""))


def check_number(
    owner: object,
    field: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    optional: bool = False,
) -> None:
    """``owner.field`` is a finite real number within the bounds (``above``: strictly greater)."""
    value = getattr(owner, field)
    if optional and value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    ok = ok and (above is None or value > above)
    if not ok:
        raise fail(
            owner,
            field,
            f"must be a finite number{_bounds(minimum, maximum, above)}" + (", or None" if optional else ""),
        )


def check_choice(owner: object, field: str, choices: Collection[Any], *, optional: bool = False) -> None:
    """``owner.field`` is one of ``choices`` (or ``None`` where optional)."""
    value = getattr(owner, field)
    if optional and value is None:
        return
    if value not in choices:
        raise fail(owner, field, f"must be one of {', '.join(map(str, choices))}" + (", or None" if optional else ""))


def check_bool(owner: object, field: str) -> None:
    """``owner.field`` is True or False."""
    if not isinstance(getattr(owner, field), bool):
        raise fail(owner, field, "must be True or False")


def check_text(owner: object, field: str, *, optional: bool = True) -> None:
    """``owner.field`` is a non-empty string (or ``None`` where optional)."""
    value = getattr(owner, field)
    if optional and value is None:
        return
    if not isinstance(value, str) or not value:
        raise fail(owner, field, "must be a non-empty string" + (", or None" if optional else ""))


def check_numbers(
    owner: object,
    field: str,
    *,
    above: float | None = None,
    minimum: float | None = None,
    integers: bool = False,
    nonempty: bool = True,
) -> None:
    """``owner.field`` is a sequence (tuple or list) of finite numbers within the bounds."""
    value = getattr(owner, field)
    kind = "integers" if integers else "numbers"
    if not isinstance(value, Sequence) or isinstance(value, str) or (nonempty and not value):
        raise fail(owner, field, f"must be a {'non-empty ' if nonempty else ''}list of {kind}")
    for item in value:
        ok = isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item)
        ok = ok and (not integers or isinstance(item, int)) and (minimum is None or item >= minimum)
        if not ok or (above is not None and not item > above):
            raise fail(owner, field, f"each must be a finite {kind[:-1]}{_bounds(minimum, None, above)}")
