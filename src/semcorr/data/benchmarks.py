"""The benchmarks ``semcorr eval`` knows: loader, splits and each one's PCK protocol."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from .ap10k_pairs import load_ap10k
from .cub import load_cub
from .pairs import Pair, without_outside_keypoints
from .pfpascal import load_pf_pascal
from .pfwillow import load_pf_willow
from .spair import load_spair

ThresholdKind = Literal["bbox", "image"]  # the length PCK scales: the target box's longer side, or the image's
THRESHOLD_KINDS: tuple[str, ...] = ("bbox", "image")


@dataclass(frozen=True)
class Benchmark:
    """One benchmark and its standard protocol.

    Attributes:
        name: canonical name (``spair``, ``pf-willow``, ...).
        title: how papers call it.
        load: ``load(root, split, **options) -> list[Pair]``.
        splits: the splits it has; ``default_split`` is the one papers report.
        alphas: the PCK thresholds papers report.
        threshold: ``bbox`` (target box's longer side) or ``image`` (target image's longer side).
    """

    name: str
    title: str
    load: Callable[..., list[Pair]]
    splits: tuple[str, ...]
    default_split: str
    alphas: tuple[float, ...]
    threshold: ThresholdKind


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("spair", "SPair-71k", load_spair, ("trn", "val", "test"), "test", (0.1, 0.05, 0.01), "bbox"),
        Benchmark("pf-willow", "PF-WILLOW", load_pf_willow, ("test",), "test", (0.05, 0.1, 0.15), "bbox"),
        Benchmark("pf-pascal", "PF-PASCAL", load_pf_pascal, ("trn", "val", "test"), "test", (0.05, 0.1, 0.15), "image"),
        Benchmark("cub", "CUB-200-2011", load_cub, ("train", "test"), "test", (0.1, 0.05, 0.01), "bbox"),
        *(
            Benchmark(
                f"ap10k-{subset}",
                f"AP-10K {subset}",
                partial(load_ap10k, subset=subset),
                ("trn", "val", "test") if subset == "intra-species" else ("val", "test"),
                "test",
                (0.1, 0.05, 0.01),
                "bbox",
            )
            for subset in ("intra-species", "cross-species", "cross-family")
        ),
    )
}

ALIASES = {
    "spair-71k": "spair",
    "spair71k": "spair",
    "pfwillow": "pf-willow",
    "willow": "pf-willow",
    "pfpascal": "pf-pascal",
    "pascal": "pf-pascal",
    "cub-200-2011": "cub",
    "cub200": "cub",
    "ap10k": "ap10k-intra-species",
    "ap-10k": "ap10k-intra-species",
}


def get_benchmark(name: str) -> Benchmark:
    """A benchmark by name or alias (case-insensitive)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BENCHMARKS:
        raise InputError(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


def load_benchmark(
    benchmark: Benchmark, root: str | Path, split: str | None = None, *, outside: str = "leave out", **options: Any
) -> tuple[str, list[Pair]]:
    """``(split, pairs)`` of a benchmark; ``options`` go to its loader (e.g. ``layout="small"``).

    Args:
        outside: annotated keypoints outside their image: ``leave out`` (semcorr's own rule:
            :func:`leave_out_outside`) or ``count`` (as every authors' evaluation code does).
    """
    split = split or benchmark.default_split
    try:
        pairs = benchmark.load(Path(root), split, **options)
    except TypeError as error:  # an option the loader does not take (or one it sets itself)
        if "keyword argument" not in str(error):
            raise
        raise InputError(f"{benchmark.name}: {error}".replace("load_", "loader ")) from None
    return split, (pairs if outside == "count" else leave_out_outside(pairs, f"{benchmark.title} {split}"))


def leave_out_outside(pairs: list[Pair], what: str) -> list[Pair]:
    """The pairs with keypoints annotated more than 1 px outside their image marked not visible
    (semcorr's own rule: annotation errors no prediction could be scored against), reported in one
    warning naming ``what`` (e.g. ``SPair-71k test``)."""
    pairs, outside = without_outside_keypoints(pairs)
    if outside:
        warnings.warn(
            f"{what}: {len(outside)} annotated keypoint(s) lie outside their image and are left out, e.g. {outside[0]}",
            stacklevel=3,
        )
    return pairs
