"""Left/right partners of named keypoints, for flip-aware transfer (``--pose-align``).

In the mirror image of an animal, the part that looks like its left eye is the original's right
eye. When an example is matched mirrored (:mod:`semcorr.matching.pose_align`), each keypoint is therefore
looked up at its partner's mirrored position. The partners come from (``--left-right``):

* ``names`` (the default): keypoints whose names differ only in a ``left``/``right`` (or ``l``/``r``)
  word are partners: ``left_eye``/``right_eye``, ``L_paw``/``R_paw``, ``leftEar``/``rightEar``;
* a JSON file: ``{"left_eye": "right_eye", ...}`` or ``[["left_eye", "right_eye"], ...]``;
* a built-in table of :mod:`semcorr.data.symmetry`: ``spair:CATEGORY`` (e.g. ``spair:cat``),
  ``ap10k`` or ``cub``, as indices into the examples' keypoint list.

Keypoints without a partner (a nose, a tail) are their own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.symmetry import SPAIR_MIRROR_PAIRS, mirror_pairs
from ..errors import InputError
from ..fileio import read_json

TABLES = ("spair:CATEGORY", "ap10k", "cub")
_SWAP = {"left": "right", "right": "left", "l": "r", "r": "l"}


def _tokens(name: str) -> tuple[str, ...]:
    return tuple(token.lower() for token in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", name))


def pairs_from_names(names: Sequence[str]) -> list[tuple[int, int]]:
    """(left, right) index pairs of names that differ only in a left/right word."""
    index = {_tokens(name): i for i, name in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        tokens = _tokens(name)
        for position, token in enumerate(tokens):
            if token in ("left", "l"):
                partner = index.get(tokens[:position] + (_SWAP[token],) + tokens[position + 1 :])
                if partner is not None and partner != i:
                    pairs.append((i, partner))
                    break
    return pairs


def _pairs_from_file(path: Path, names: Sequence[str]) -> list[tuple[int, int]]:
    data = read_json(path)
    entries = list(data.items()) if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(
        isinstance(e, (list, tuple)) and len(e) == 2 and all(isinstance(n, str) for n in e) for e in entries
    ):
        raise InputError(f'{path}: expected {{"left_eye": "right_eye", ...}} or [["left_eye", "right_eye"], ...]')
    position = {name: i for i, name in enumerate(names)}
    pairs = []
    for left, right in entries:
        for name in (left, right):
            if name not in position:
                raise InputError(f"{path}: {name!r} is not one of the examples' keypoints ({', '.join(names)})")
        pairs.append((position[left], position[right]))
    return pairs


def _pairs_from_table(spec: str, count: int) -> list[tuple[int, int]]:
    benchmark, _, category = spec.partition(":")
    benchmark = benchmark.lower()
    if benchmark == "spair" and category not in SPAIR_MIRROR_PAIRS:
        raise InputError(
            f"--left-right {spec}: SPair-71k categories with left/right keypoints are {', '.join(SPAIR_MIRROR_PAIRS)}"
        )
    pairs = list(mirror_pairs(benchmark, category))
    if not pairs:
        raise InputError(
            f"--left-right {spec}: not a built-in table ({', '.join(TABLES)}), a names rule (names) or a JSON file"
        )
    largest = max(max(pair) for pair in pairs)
    if largest >= count:
        raise InputError(
            f"--left-right {spec}: the table pairs keypoint {largest} but the examples have {count} keypoints"
        )
    return pairs


def left_right_partners(spec: str | None, names: Sequence[str]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Each keypoint's mirror partner.

    Args:
        spec: ``None`` or ``"names"``, a JSON file, or a built-in table (module docstring).
        names: the K keypoint names of the examples.
    Returns:
        (K,) int64: the index of each keypoint's partner (its own where it has none), and the
        (left name, right name) pairs used.
    """
    if spec is None or spec == "names":
        pairs = pairs_from_names(names)
    elif Path(spec).is_file():
        pairs = _pairs_from_file(Path(spec), names)
    else:
        pairs = _pairs_from_table(spec, len(names))
    partners = np.arange(len(names), dtype=np.int64)
    for left, right in pairs:
        if partners[left] != left or partners[right] != right or left == right:
            raise InputError(
                f"--left-right {spec or 'names'}: keypoint {names[left]!r} or {names[right]!r} is given "
                "more than one partner"
            )
        partners[left], partners[right] = right, left
    return partners, [(names[left], names[right]) for left, right in pairs]
