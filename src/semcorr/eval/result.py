"""One result skeleton for pair and k-shot evaluation: the benchmark's pairs, the stage clock,
scoring, and the result dict both runs return.

    run = open_benchmark("pf-willow", root, split=None, limit=None, pck=PCKSettings())
    clock = Clock()                       # load, features, matching, scoring
    scores, records = score_predictions(run.pairs, found, run.alphas, run.threshold, pck, frames=frames)
    result = make_result(run, extractor, protocol=..., scores=scores, settings=..., clock=clock)

Every result is a versioned results file (:data:`RESULT_FORMAT`, :data:`RESULT_VERSION`): the model
and its weights' digest, the protocol with every rule, the benchmark, split and a digest of its pair
list, per-category and overall PCK (both averages), the semcorr version (:mod:`.digest`,
:mod:`.results_file`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data.benchmarks import Benchmark, ThresholdKind, get_benchmark, leave_out_outside, load_benchmark
from ..data.pairs import Pair
from ..errors import InputError
from ..features.base import Extractor
from .digest import pairs_digest, weights_digest
from .frames import Frame
from .pck import PCKSettings, alpha_key, random_guess_correct, summarize

CHANCE_SAMPLES = 100
STAGES = ("load", "features", "matching", "scoring")
RESULT_FORMAT = "semcorr-result"
RESULT_SET_FORMAT = "semcorr-result-set"  # several models' results of one `semcorr eval --models` run
RESULT_CURVE_FORMAT = "semcorr-result-curve"  # one result per K of `semcorr eval --transfer-shots K1 K2 ...`
RESULT_VERSION = 1


@dataclass(frozen=True)
class BenchmarkRun:
    """A benchmark opened for one evaluation.

    Attributes:
        spec: the benchmark (:data:`semcorr.data.benchmarks.BENCHMARKS`).
        data_root: its folder as given.
        split: the split evaluated.
        pairs: the pairs evaluated (after ``limit``).
        total_pairs: the pairs in the split.
        alphas: PCK thresholds.
        threshold: the length PCK scales (``bbox`` or ``image``).
        limit: the ``limit`` asked for.
        loader_options: passed to the loader.
        loaded: the pairs as the loader gave them (before keypoints outside their image were left
            out, where the protocol leaves them out); their digest identifies the pair list.
    """

    spec: Benchmark
    data_root: str
    split: str
    pairs: list[Pair]
    total_pairs: int
    alphas: tuple[float, ...]
    threshold: ThresholdKind
    limit: int | None
    loader_options: Mapping[str, Any]
    loaded: list[Pair]


def open_benchmark(
    benchmark: str,
    data_root: str | Path,
    *,
    split: str | None,
    limit: int | None,
    pck: PCKSettings,
    loader_options: Mapping[str, Any] | None = None,
    outside: str = "leave out",
) -> BenchmarkRun:
    """Load a benchmark's pairs (the first ``limit``) and its PCK thresholds.

    Args:
        outside: annotated keypoints outside their image: ``leave out`` (with a warning) or ``count``
            (the authors' protocols).
    Raises:
        InputError: an unknown benchmark, ``limit`` below 1, or no pairs.
    """
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    spec = get_benchmark(benchmark)
    alphas = tuple(float(a) for a in (pck.alphas if pck.alphas is not None else spec.alphas))
    split, loaded = load_benchmark(spec, data_root, split, outside="count", **dict(loader_options or {}))
    total = len(loaded)
    loaded = loaded[:limit] if limit is not None else loaded
    pairs = loaded if outside == "count" else leave_out_outside(loaded, f"{spec.title} {split}")
    return BenchmarkRun(
        spec,
        str(data_root),
        split,
        pairs,
        total,
        alphas,
        pck.threshold or spec.threshold,
        limit,
        dict(loader_options or {}),
        loaded,
    )


class Clock:
    """Wall time of an evaluation's stages (:data:`STAGES`), each from the end of the one before."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """``stage`` ended now."""
        now = time.perf_counter()
        self.seconds[stage] = now - self.last
        self.last = now

    def fork(self) -> Clock:
        """A clock that goes on from now with this one's stages so far (one of several runs that share
        the stages before, e.g. each K of a k-shot curve)."""
        clock = Clock()
        clock.start, clock.seconds = self.start, dict(self.seconds)
        return clock

    def timing(self, **extra: Any) -> dict[str, Any]:
        return {**{f"{stage}_s": round(self.seconds.get(stage, 0.0), 3) for stage in STAGES}, **extra}

    def wall(self) -> float:
        """Seconds of the stages this clock timed."""
        return round(sum(self.seconds.values()), 3)


def pck_text(
    pck: PCKSettings,
    alphas: tuple[float, ...],
    threshold: str,
    frame: str,
    *,
    side: int | None = None,
    length_rule: str = "own axis",
) -> str:
    """The PCK rule in words, as the result and the table state it."""
    length = "the target box's longer side" if threshold == "bbox" else "the target image's longer side"
    if length_rule == "frame side":
        length = f"the frame's side ({side})"
    elif length_rule == "height scale":
        length += f" times {side}/H (the height's scale)"
    elif length_rule.startswith("float16"):
        length += " in float16"
    where = "original target-image pixels" if frame == "original" else f"the {side or 'input'} {frame} frame"
    return (
        f"PCK@{'/'.join(format(a, 'g') for a in alphas)} of {length}, averaged per {pck.average}, "
        f"correct if distance {'<=' if pck.inclusive else '<'} alpha * L, in {where}"
    )


def score_predictions(
    pairs: Sequence[Pair],
    found: Sequence[np.ndarray],
    alphas: Sequence[float],
    threshold: ThresholdKind,
    pck: PCKSettings = PCKSettings(),
    *,
    predictions: bool = False,
    frames: Sequence[Frame] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """PCK of predicted target points, overall and per category, and the random-guess level.

    Args:
        pairs: the evaluated pairs.
        found: per pair, (M_i, 2) predicted target points of its counted keypoints (:func:`predict`),
            in original target-image pixels.
        alphas: the thresholds.
        threshold: the length ``L`` (``bbox`` or ``image``).
        pck: ``average`` picks the headline figure; ``inclusive`` the comparison.
        predictions: also return one record per pair: what an independent check needs (``id``,
            ``category``, both images and sizes ``[H, W]``, ``keypoint_ids``, ``source_points``,
            ``pred``, ``gt`` in original pixels, ``target_box``, ``threshold_length`` and the limit
            ``alpha * L`` per threshold (``thresholds``) in the frame, ``comparison``, and the
            ``frame``: scale, offset, clamp, side, length rule and precision).
        frames: per pair, the target's :class:`~semcorr.eval.frames.Frame` distances and ``L``
            are measured in (a protocol's frame); ``None``: original pixels in float64.
    Returns:
        the scoring part of :func:`evaluate`'s result, and the prediction records (or ``[]``).
    """
    correct = np.zeros((len(pairs), len(alphas)))
    chance = np.zeros((len(pairs), len(alphas)))
    counts = np.zeros(len(pairs), np.int64)
    rng = np.random.default_rng(0)
    records = []
    comparison = "<=" if pck.inclusive else "<"
    for i, (pair, predicted) in enumerate(zip(pairs, found)):
        source, target = pair.counted_points()
        predicted = np.asarray(predicted, np.float64).reshape(-1, 2)
        frame = frames[i] if frames is not None else Frame.of("original", pair.target_size, None)
        length = frame.length(threshold, pair.target_box, pair.target_size)
        correct[i] = frame.correct(predicted, target, length, alphas, inclusive=pck.inclusive).sum(axis=1)
        box = frame.to_frame(np.reshape(pair.target_box, (2, 2))).reshape(4)
        truth = frame.to_frame(target, annotated=True).astype(np.float64)
        chance[i] = random_guess_correct(
            truth, box.tolist(), length, alphas, inclusive=pck.inclusive, samples=CHANCE_SAMPLES, rng=rng
        )
        counts[i] = len(target)
        if predictions:
            records.append(
                {
                    "id": pair.id,
                    "category": pair.category,
                    "source_image": str(pair.source_image),
                    "target_image": str(pair.target_image),
                    "source_size": list(pair.source_size),
                    "target_size": list(pair.target_size),
                    "keypoint_ids": pair.keypoint_ids[pair.visible].tolist(),
                    "source_points": source.astype(np.float64).tolist(),
                    "pred": predicted.tolist(),
                    "gt": target.astype(np.float64).tolist(),
                    "target_box": np.asarray(pair.target_box, np.float64).tolist(),
                    "threshold_length": length,
                    "thresholds": {alpha_key(a): v for a, v in zip(alphas, frame.limits(length, alphas))},
                    "comparison": comparison,
                    "frame": frame.fields(),
                }
            )
    categories = [pair.category for pair in pairs]
    summary = summarize(categories, correct, counts, alphas)
    expected = summarize(categories, chance, counts, alphas)
    chosen = f"per_{pck.average}"
    scores = {
        "n_pairs": summary["n_pairs"],
        "n_pairs_scored": summary["n_pairs_scored"],
        "n_keypoints": summary["n_keypoints"],
        "pck": summary[chosen],
        "pck_per_keypoint": summary["per_keypoint"],
        "pck_per_image": summary["per_image"],
        "pck_category_mean": summary["category_mean"][chosen],
        "category_mean": summary["category_mean"],
        "per_category": {
            name: {
                "n_pairs": row["n_pairs"],
                "n_keypoints": row["n_keypoints"],
                "pck": row[chosen],
                "per_keypoint": row["per_keypoint"],
                "per_image": row["per_image"],
            }
            for name, row in summary["per_category"].items()
        },
        "chance": {
            "pck": expected[chosen],
            "per_keypoint": expected["per_keypoint"],
            "per_image": expected["per_image"],
            "what": f"expected PCK of a uniform random guess inside the target box "
            f"({CHANCE_SAMPLES} guesses per keypoint, seed 0)",
        },
    }
    return scores, records


def pck_settings(run: BenchmarkRun, pck: PCKSettings) -> dict[str, Any]:
    """The PCK part of a result's settings."""
    return {
        "alphas": list(run.alphas),
        "threshold": run.threshold,
        "average": pck.average,
        "comparison": "<=" if pck.inclusive else "<",
    }


def run_digests(run: BenchmarkRun, extractor: Extractor) -> tuple[str, str | None]:
    """The pair list's and the weights' digests (:mod:`.digest`) of a run."""
    return pairs_digest(run.loaded), weights_digest(extractor)


def make_result(
    run: BenchmarkRun,
    extractor: Extractor,
    *,
    title: str,
    protocol: dict[str, Any],
    scores: dict[str, Any],
    n_images: int,
    settings: dict[str, Any],
    clock: Clock,
    images_computed: int,
    records: list[dict[str, Any]] | None = None,
    digests: tuple[str, str | None] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """The result dict of :func:`semcorr.eval.evaluate` and :func:`semcorr.eval.kshot.evaluate_kshot`:
    a versioned results file (``format``, ``version``, ``semcorr_version``) naming the model and its
    ``weights_digest``, the protocol, the benchmark, split and ``pairs_digest`` (:mod:`.digest`).

    Args:
        title: the table's title.
        protocol: every rule (``name``, ..., ``summary``, ``pck``).
        scores: :func:`score_predictions`'s first value.
        settings: run-specific settings; the extractor's config and device are added.
        records: per-pair predictions, when asked for.
        digests: :func:`run_digests` of ``run`` and ``extractor``, when the caller makes several
            results of one run (hashing the weights reads every one of them).
        **sections: further top-level keys (``pose_align``, ``transfer``, ...), in order.
    """
    pairs, weights = digests if digests is not None else run_digests(run, extractor)
    result: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "semcorr_version": __version__,
        "benchmark": run.spec.name,
        "title": title,
        "split": run.split,
        "data_root": run.data_root,
        "pairs_digest": pairs,
        "model": extractor.name,
        "weights_digest": weights,
        "random_weights": bool(extractor.random_weights),
        "protocol": protocol,
        **scores,
        "n_images": n_images,
        **sections,
        "settings": {"extractor": dataclasses.asdict(extractor.config), **settings, "device": str(extractor.device)},
        "timing": clock.timing(images_computed=images_computed),
        "wall_time_s": clock.wall(),
    }
    if extractor.random_weights:
        result["warning"] = "features from random weights: the scores carry no meaning"
    if records is not None:
        result["predictions"] = records
    return result
