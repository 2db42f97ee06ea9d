"""PCK, the percentage of correct keypoints: pure functions on numpy arrays.

For pair ``i`` with ``N_i`` counted keypoints (visible in both images), predicted target points
``p̂_ij``, ground truth ``p_ij`` and threshold length ``L_i`` (target-image pixels):

    correct_ij(α) = ‖p̂_ij − p_ij‖₂ <= α · L_i        (inclusive; ``inclusive=False``: < )

    PCK per keypoint = 100 · Σ_ij correct_ij / Σ_i N_i          (every keypoint weighs the same)
    PCK per image    = 100 · mean_i (Σ_j correct_ij / N_i)      (every pair weighs the same;
                                                                 pairs with N_i = 0 are skipped)

Per category the same sums run over that category's pairs; the **category mean** is the plain
mean of the per-category figures (every category weighs the same). ``L_i`` is

* ``bbox``: the longer side of the target object box, ``max(x2 − x1, y2 − y1)`` (SPair-71k,
  PF-WILLOW with the keypoints' extent as box, CUB-200-2011, AP-10K);
* ``image``: the longer side of the target image, ``max(H, W)`` (PF-PASCAL).

Who uses what: DistillDIFT's evaluation counts correct keypoints over all SPair-71k test pairs
(**per keypoint**) and compares with ``<=``; GeoAware-SC's code (which DistillDIFT's release
reuses) compares with ``<`` and reports **per image** unless asked for per-keypoint results;
HPF/DHPF/CATs-style code averages per image. Both averages are always computed here; ``<=``
against ``<`` only matters for points exactly on the circle.
Thresholds: α = 0.1, 0.05, 0.01 for SPair-71k, CUB and AP-10K; 0.05, 0.1, 0.15 for PF-PASCAL
and PF-WILLOW.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from ..data.benchmarks import THRESHOLD_KINDS, ThresholdKind
from ..settings import check_bool, check_choice, check_numbers

Average = Literal["keypoint", "image"]
AVERAGES: tuple[str, ...] = ("keypoint", "image")


@dataclass(frozen=True)
class PCKSettings:
    """How predictions are scored.

    Attributes:
        alphas: PCK thresholds; ``None``: the benchmark's (0.1, 0.05, 0.01; PF-PASCAL and
            PF-WILLOW 0.05, 0.1, 0.15).
        threshold: ``bbox`` or ``image`` length ``L``; ``None``: the benchmark's.
        average: which average the headline ``pck`` reports, ``keypoint`` or ``image`` (both
            are always in the result).
        inclusive: correct when ``d <= alpha * L`` (True, DistillDIFT) or ``d < alpha * L``.
    """

    OPTIONS: ClassVar[dict[str, str]] = {"alphas": "--alpha", "inclusive": "--strict"}

    alphas: tuple[float, ...] | None = None
    threshold: ThresholdKind | None = None
    average: Average = "keypoint"
    inclusive: bool = True

    def __post_init__(self) -> None:
        if self.alphas is not None:
            check_numbers(self, "alphas", above=0)
        check_choice(self, "threshold", THRESHOLD_KINDS, optional=True)
        check_choice(self, "average", AVERAGES)
        check_bool(self, "inclusive")


def alpha_key(alpha: float) -> str:
    """The JSON key of a threshold: ``0.1 -> "0.1"``, ``0.05 -> "0.05"``."""
    return format(float(alpha), "g")


def threshold_length(kind: ThresholdKind, box: Sequence[float] | np.ndarray, image_size: Sequence[int]) -> float:
    """``L`` of one pair: the longer side of the target box ``(x1, y1, x2, y2)`` (``bbox``) or of
    the target image ``(H, W)`` (``image``)."""
    if kind == "bbox":
        x1, y1, x2, y2 = (float(v) for v in box)
        return max(x2 - x1, y2 - y1)
    if kind == "image":
        return float(max(image_size))
    raise ValueError(f"threshold kind must be one of {THRESHOLD_KINDS}, got {kind!r}")


def correct_keypoints(
    predicted: np.ndarray, target: np.ndarray, length: float, alphas: Sequence[float], *, inclusive: bool = True
) -> np.ndarray:
    """Which keypoints of one pair are correct at each threshold.

    Args:
        predicted: (N, 2) predicted target points (x, y).
        target: (N, 2) ground-truth target points.
        length: the pair's threshold length ``L`` in the same pixels.
        alphas: (A,) threshold fractions.
        inclusive: ``d <= α·L`` (True, DistillDIFT) or ``d < α·L`` (False, GeoAware-SC).
    Returns:
        (A, N) bool.
    """
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    if predicted.shape != target.shape or predicted.ndim != 2 or predicted.shape[1] != 2:
        raise ValueError(f"predicted and target must both be (N, 2), got {predicted.shape} and {target.shape}")
    distance = np.linalg.norm(predicted - target, axis=1)
    limits = np.asarray(alphas, np.float64)[:, None] * float(length)
    return distance[None] <= limits if inclusive else distance[None] < limits


def _rates(correct: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A,) per-keypoint and (A,) per-image PCK in percent of (P, A) correct counts and (P,) keypoint counts."""
    total = counts.sum()
    per_keypoint = 100.0 * correct.sum(axis=0) / total if total else np.full(correct.shape[1], np.nan)
    scored = counts > 0
    per_image = (
        100.0 * (correct[scored] / counts[scored, None]).mean(axis=0)
        if scored.any()
        else np.full(correct.shape[1], np.nan)
    )
    return per_keypoint, per_image


def _as_dict(alphas: Sequence[float], values: np.ndarray) -> dict[str, float | None]:
    return {alpha_key(a): (None if np.isnan(v) else float(v)) for a, v in zip(alphas, values)}


def summarize(categories: Sequence[str], correct: np.ndarray, counts: np.ndarray, alphas: Sequence[float]) -> dict:
    """Overall and per-category PCK, both averages, in percent.

    Args:
        categories: (P,) the category of each pair.
        correct: (P, A) number of correct keypoints of each pair at each alpha.
        counts: (P,) number of counted keypoints of each pair.
        alphas: (A,) the thresholds.
    Returns:
        ``{"n_pairs", "n_pairs_scored", "n_keypoints", "per_keypoint": {"0.1": %, ...},
        "per_image": {...}, "category_mean": {"per_keypoint": {...}, "per_image": {...}},
        "per_category": {name: {"n_pairs", "n_keypoints", "per_keypoint", "per_image"}}}``
        (a figure is ``None`` where nothing was scored).
    """
    correct = np.asarray(correct, np.float64).reshape(len(categories), len(alphas))
    counts = np.asarray(counts, np.int64).reshape(len(categories))
    labels = np.asarray(list(categories), dtype=object)
    per_category, keypoint_rows, image_rows = {}, [], []
    for name in sorted(set(labels.tolist())):
        rows = labels == name
        per_keypoint, per_image = _rates(correct[rows], counts[rows])
        per_category[name] = {
            "n_pairs": int(rows.sum()),
            "n_keypoints": int(counts[rows].sum()),
            "per_keypoint": _as_dict(alphas, per_keypoint),
            "per_image": _as_dict(alphas, per_image),
        }
        if counts[rows].sum():
            keypoint_rows.append(per_keypoint)
            image_rows.append(per_image)
    per_keypoint, per_image = _rates(correct, counts)
    empty = np.full(len(alphas), np.nan)
    return {
        "n_pairs": len(labels),
        "n_pairs_scored": int((counts > 0).sum()),
        "n_keypoints": int(counts.sum()),
        "per_keypoint": _as_dict(alphas, per_keypoint),
        "per_image": _as_dict(alphas, per_image),
        "category_mean": {
            "per_keypoint": _as_dict(alphas, np.mean(keypoint_rows, axis=0) if keypoint_rows else empty),
            "per_image": _as_dict(alphas, np.mean(image_rows, axis=0) if image_rows else empty),
        },
        "per_category": per_category,
    }


def random_guess_correct(
    target: np.ndarray,
    box: Sequence[float] | np.ndarray,
    length: float,
    alphas: Sequence[float],
    *,
    inclusive: bool = True,
    samples: int = 100,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Expected correct keypoints of one pair when each prediction is a uniform random point in the
    target box: the chance level a method must beat.

    Args:
        target: (N, 2) ground-truth target points.
        box: the target box ``(x1, y1, x2, y2)`` the guesses are drawn from.
        length: as in :func:`correct_keypoints`.
        alphas: as in :func:`correct_keypoints`.
        inclusive: as in :func:`correct_keypoints`.
        samples: Monte-Carlo guesses per keypoint.
        rng: the random generator (default: seeded with 0, so the figure is deterministic).
    Returns:
        (A,) float: the expected number of correct keypoints at each alpha.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    target = np.asarray(target, np.float64)
    x1, y1, x2, y2 = (float(v) for v in box)
    guesses = rng.uniform((x1, y1), (x2, y2), size=(samples, len(target), 2))
    distance = np.linalg.norm(guesses - target[None], axis=-1)  # (S, N)
    limits = np.asarray(alphas, np.float64)[:, None, None] * float(length)
    hits = distance[None] <= limits if inclusive else distance[None] < limits
    return hits.mean(axis=1).sum(axis=-1)
