"""k-shot label transfer on a benchmark: how many annotated examples a category needs.

    from semcorr.eval.kshot import evaluate_kshot, evaluate_kshot_curve
    result = evaluate_kshot("pf-willow", "data/PF-WILLOW", shots=3, model="baseline")
    result["pck"]["0.1"]       # PCK@0.1 of the transferred keypoints, per keypoint, in percent
    curve = evaluate_kshot_curve("pf-willow", "data/PF-WILLOW", shots=(1, 3, 5), model="baseline")
    curve["curve"]["pck"]      # {"1": {...}, "3": {...}, "5": {...}}, every K on the same targets

The benchmark's pairs give each image's keypoints (the union over the pairs it appears in), box
and size. Images are grouped by category (PF-WILLOW: by subclass, whose ten keypoints are defined
per subclass). Per group the images are put in an order drawn with a fixed seed (a generator
seeded with ``seed`` and the group's name, so a group's draw does not depend on the others), and the
first ``shots`` are the examples, so the examples of fewer shots are among those of more. Their
keypoints are transferred by :mod:`semcorr.transfer` (:mod:`semcorr.transfer.vote`: the place most
examples' votes support) to the group's targets, and each target is scored like a pair of pair
evaluation (:func:`semcorr.eval.result.score_predictions`, the same PCK options): a keypoint counts
where the target has it and at least one example labels it. The targets are every other image of
the group for one K (:func:`evaluate_kshot`); for a curve (:func:`evaluate_kshot_curve`) they are
the images that are not among the largest K's examples, the same for every K, so the curve compares
numbers of examples and nothing else. Every keypoint is placed (no confidence threshold) so the
figure is comparable with pair evaluation; ``transfer.confident`` says what share of the counted
keypoints reaches ``min_confidence`` and how often those are correct. Groups with no more than
``shots`` (the largest K) images are left out (listed in ``transfer.skipped_groups``).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data.benchmarks import ThresholdKind
from ..data.pairs import Pair
from ..data.symmetry import mirror_pairs
from ..errors import InputError
from ..features.base import Extractor
from ..features.config import DEFAULT_MODEL
from ..features.registry import resolve_extractor
from ..matching.points import MatchSettings
from ..transfer.labeller import KeypointLabeller, TransferSettings
from .cache import CacheMode, FeatureCache
from .frames import Frame
from .pck import PCKSettings, alpha_key
from .protocols import SEMCORR
from .result import (
    RESULT_CURVE_FORMAT,
    RESULT_VERSION,
    Clock,
    make_result,
    open_benchmark,
    pck_settings,
    pck_text,
    run_digests,
    score_predictions,
)
from .runner import protocol_rules


@dataclass
class AnnotatedImage:
    """One benchmark image with its keypoints: (K, 2) points, (K,) visible, (4,) box, (H, W) size."""

    path: Path
    category: str
    points: np.ndarray
    visible: np.ndarray
    box: np.ndarray
    size: tuple[int, int]


def annotated_images(pairs: list[Pair]) -> dict[str, list[AnnotatedImage]]:
    """Every image of the pairs with the union of its keypoints, per group (sorted by path)."""
    labels: dict[tuple[str, Path], dict[int, np.ndarray]] = {}
    about: dict[tuple[str, Path], tuple[str, np.ndarray, tuple[int, int]]] = {}
    counts: dict[str, int] = {}
    for pair in pairs:
        group = str(pair.flags.get("subclass", pair.category))
        counts[group] = max(counts.get(group, 0), int(pair.keypoint_ids.max(initial=-1)) + 1)
        for path, points, visible, box, size in (
            (pair.source_image, pair.source_points, pair.source_visible, pair.source_box, pair.source_size),
            (pair.target_image, pair.target_points, pair.target_visible, pair.target_box, pair.target_size),
        ):
            about.setdefault((group, path), (pair.category, box, size))
            known = labels.setdefault((group, path), {})
            known.update((k, p) for k, p, seen in zip(pair.keypoint_ids.tolist(), points, visible) if seen)
    groups: dict[str, list[AnnotatedImage]] = {}
    for group, path in sorted(labels, key=lambda key: (key[0], str(key[1]))):
        points, visible = np.zeros((counts[group], 2)), np.zeros(counts[group], bool)
        for keypoint, point in labels[group, path].items():
            points[keypoint], visible[keypoint] = point, True
        category, box, size = about[group, path]
        groups.setdefault(group, []).append(AnnotatedImage(path, category, points, visible, box, size))
    return groups


def draw_examples(images: list[AnnotatedImage], shots: int, seed: int, group: str) -> list[int]:
    """The indices of the ``shots`` examples of a group: the first ``shots`` of a permutation seeded by
    ``seed`` and the group's name, so the examples of fewer shots are among those of more."""
    order = np.random.default_rng([seed, zlib.crc32(group.encode())]).permutation(len(images))
    return sorted(order[:shots].tolist())


def _partners(benchmark: str, category: str, count: int) -> torch.Tensor:
    partners = torch.arange(count)
    for left, right in mirror_pairs(benchmark, category):
        if left < count and right < count:
            partners[left], partners[right] = right, left
    return partners


def evaluate_kshot(benchmark: str, data_root: str | Path, *, shots: int, **options: Any) -> dict[str, Any]:
    """k-shot transfer PCK (module docstring).

    Args:
        shots: examples per group.
        **options: the keywords of :func:`evaluate_kshot_counts`: those of :func:`semcorr.eval.evaluate`
            (``model``, ``weights``, ``settings``, ``pck``, ``limit``, ...), plus ``seed`` (the draw's)
            and ``transfer`` (the transfer's tolerances and ``min_confidence``).
    Returns:
        :func:`~semcorr.eval.evaluate`'s keys, a "pair" being (the group's examples, one target), plus
        ``"transfer": {"shots", "seed", "examples": {group: [image, ...]}, "skipped_groups", "confident"}``.
    """
    return evaluate_kshot_counts([shots], benchmark, data_root, **options)[0]


def evaluate_kshot_curve(
    benchmark: str, data_root: str | Path, *, shots: Sequence[int] = (1, 3, 5), **options: Any
) -> dict[str, Any]:
    """PCK against the number of examples, every K scored on the same targets (module docstring).

    Args:
        shots: the numbers of examples, e.g. ``(1, 3, 5)``.
        **options: as :func:`evaluate_kshot`.
    Returns:
        ``{"format": "semcorr-result-curve", "version", "benchmark", "title", "model", "random_weights",
        "shots", "seed", "n_targets", "curve", "results"}`` (``semcorr compare`` reads it):
        ``results[str(K)]`` is :func:`evaluate_kshot`'s result for K examples (on the common
        targets); ``curve`` holds, per K, the headline PCK (``"pck"``), the category rows
        (``"per_category"``), and the share kept at ``min_confidence`` and their PCK.
    """
    counts = sorted(shots)
    if not counts or len(set(counts)) != len(counts):
        raise InputError(f"--transfer-shots needs distinct numbers of examples, got {counts!r}")
    results = evaluate_kshot_counts(counts, benchmark, data_root, **options)
    seed = results[0]["transfer"]["seed"]
    first = results[0]
    curve: dict[str, Any] = {"pck": {}, "per_category": {}, "kept_percent": {}, "pck_kept": {}}
    for count, result in zip(counts, results):
        key = str(count)
        curve["pck"][key] = result["pck"]
        for category, entry in result["per_category"].items():
            curve["per_category"].setdefault(category, {})[key] = entry["pck"]
        curve["kept_percent"][key] = result["transfer"]["confident"]["kept_percent"]
        curve["pck_kept"][key] = result["transfer"]["confident"]["pck_kept"]
    return {
        "format": RESULT_CURVE_FORMAT,
        "version": RESULT_VERSION,
        "benchmark": first["benchmark"],
        "title": f"{results[0]['title'].rsplit(' ', 2)[0]} k-shot transfer curve",
        "split": first["split"],
        "model": first["model"],
        "random_weights": first["random_weights"],
        "shots": counts,
        "seed": seed,
        "n_targets": first["n_pairs"],
        "min_confidence": first["transfer"]["confident"]["min_confidence"],
        "alphas": list(first["pck"]),
        "average": first["settings"]["pck"]["average"],
        "curve": curve,
        "results": {str(c): r for c, r in zip(counts, results)},
        "wall_time_s": round(
            sum(r["timing"]["matching_s"] + r["timing"]["scoring_s"] for r in results)
            + first["timing"]["load_s"]
            + first["timing"]["features_s"],
            3,
        ),
    }


def evaluate_kshot_counts(
    counts: Sequence[int],
    benchmark: str,
    data_root: str | Path,
    *,
    seed: int = 0,
    model: str | Extractor = DEFAULT_MODEL,
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    split: str | None = None,
    settings: MatchSettings = MatchSettings(),
    pck: PCKSettings = PCKSettings(),
    limit: int | None = None,
    batch_size: int = 8,
    cache: CacheMode = "auto",
    cache_dir: str | Path | None = None,
    loader_options: Mapping[str, Any] | None = None,
    predictions: bool = False,
    progress: bool = True,
    pose_align: bool = False,
    transfer: TransferSettings | None = None,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """One k-shot result per number of examples in ``counts``, all on the targets that are examples of
    none (the largest count's examples are drawn first; a smaller count's are among them).

    The other arguments are those of :func:`semcorr.eval.evaluate`.

    Args:
        counts: the numbers of examples per group.
        seed: the draw's seed.
        transfer: the transfer's tolerances and ``min_confidence`` (its matching, batch size and pose
            alignment are taken from ``settings``, ``batch_size`` and ``pose_align``).
    """
    clock = Clock()
    for shots in counts:
        if not isinstance(shots, int) or isinstance(shots, bool) or shots < 1:
            raise InputError(f"--transfer-shots must be an integer >= 1, got {shots!r}")
    most = max(counts)
    rules, pck = protocol_rules(SEMCORR, settings, pck, pose_align)
    transfer = dataclasses.replace(
        transfer or TransferSettings(), match=settings, batch_size=batch_size, pose_align=pose_align
    )
    run = open_benchmark(benchmark, data_root, split=split, limit=limit, pck=pck, loader_options=loader_options)
    spec = run.spec
    groups = annotated_images(run.pairs)
    pools = {group: draw_examples(images, most, seed, group) for group, images in groups.items() if len(images) > most}
    if not pools:
        raise InputError(f"{data_root}: no {spec.title} {run.split} category has more than {most} images")
    extractor = resolve_extractor(model, weights=weights, random_weights=random_weights, device=device, **overrides)
    clock.lap("load")
    everything = [image.path for group in pools for image in groups[group]]
    examples = [groups[group][i].path for group, rows in pools.items() for i in rows]
    results = []
    digests = run_digests(run, extractor)
    with FeatureCache(extractor, mode=cache, cache_dir=cache_dir, batch_size=batch_size, progress=progress) as store:
        store.compute(everything, flipped=examples if pose_align else ())
        clock.lap("features")
        for shots in counts:
            lap = clock.fork()
            chosen = {group: draw_examples(groups[group], shots, seed, group) for group in pools}
            scored, found, confidences = _transfer(
                groups, chosen, pools, store, transfer, spec.name, pose_align, batch_size, progress
            )
            lap.lap("matching")
            scores, records = score_predictions(scored, found, run.alphas, run.threshold, pck, predictions=predictions)
            lap.lap("scoring")
            targets = (
                "every other image of the category"
                if len(counts) == 1
                else f"the images that are none of its {most} examples"
            )
            results.append(
                make_result(
                    run,
                    extractor,
                    title=f"{spec.title} {shots}-shot transfer",
                    protocol={
                        **rules.fields(),
                        "name": "semcorr-kshot",
                        "shots": shots,
                        "seed": seed,
                        "summary": f"protocol semcorr-kshot: {shots} example(s) per category drawn with seed "
                        f"{seed}, transferred to {targets} (the table's 'pairs' are target images); "
                        f"{rules.summary().split(': ', 1)[1]}",
                        "pck": pck_text(pck, run.alphas, run.threshold, "original"),
                    },
                    scores=scores,
                    n_images=len(everything),
                    clock=lap,
                    images_computed=store.computed,
                    records=records if predictions else None,
                    digests=digests,
                    settings={
                        "matching": dataclasses.asdict(settings),
                        "transfer": {k: v for k, v in dataclasses.asdict(transfer).items() if k != "match"},
                        "pck": pck_settings(run, pck),
                        "batch_size": batch_size,
                        "limit": limit,
                        "feature_cache": store.mode,
                        "pose_align": pose_align,
                    },
                    transfer={
                        "shots": shots,
                        "seed": seed,
                        "examples": {g: [str(groups[g][i].path) for i in r] for g, r in chosen.items()},
                        "skipped_groups": sorted(set(groups) - set(pools)),
                        "confident": _confident(
                            scored, found, confidences, run.alphas, run.threshold, pck, transfer.min_confidence
                        ),
                    },
                    pose_align={"enabled": pose_align},
                )
            )
    return results


def _transfer(
    groups: dict[str, list[AnnotatedImage]],
    chosen: dict[str, list[int]],
    pools: dict[str, list[int]],
    store: FeatureCache,
    transfer: TransferSettings,
    benchmark: str,
    pose_align: bool,
    batch_size: int,
    progress: bool,
) -> tuple[list[Pair], list[np.ndarray], list[np.ndarray]]:
    """Each group's ``chosen`` examples transferred to its images outside ``pools``: the scored pairs,
    the points found at their counted keypoints and the confidences there."""
    scored: list[Pair] = []
    found: list[np.ndarray] = []
    confidences: list[np.ndarray] = []
    for group in tqdm(sorted(chosen), desc="transfer", unit="category", disable=not progress):
        images, rows = groups[group], chosen[group]
        shown = [images[i] for i in rows]
        paths = [image.path for image in shown]
        with torch.inference_mode():
            labeller = KeypointLabeller(
                store.feature_map(paths),
                torch.from_numpy(np.stack([e.points for e in shown])).float(),
                torch.from_numpy(np.stack([e.visible for e in shown])),
                transfer,
                flipped=store.feature_map(paths, flipped=True) if pose_align else None,
                partners=_partners(benchmark, shown[0].category, len(shown[0].visible)),
            )
            targets = [image for i, image in enumerate(images) if i not in pools[group]]
            for begin in range(0, len(targets), batch_size):
                batch = targets[begin : begin + batch_size]
                votes = labeller.label(store.feature_map([t.path for t in batch])).votes
                for target, points, confidence in zip(
                    batch, votes.points.cpu().numpy(), votes.confidence.cpu().numpy()
                ):
                    pair = _scored_pair(group, shown, target, benchmark)
                    scored.append(pair)
                    found.append(points[pair.visible].astype(np.float64))
                    confidences.append(confidence[pair.visible])
    return scored, found, confidences


def _scored_pair(group: str, examples: list[AnnotatedImage], target: AnnotatedImage, benchmark: str) -> Pair:
    """A :class:`Pair` for scoring: the examples' union of labels as the source, the target as itself."""
    labelled = np.any([e.visible for e in examples], axis=0)
    count = len(labelled)
    return Pair(
        id=f"{group}/{target.path.stem}",
        benchmark=benchmark,
        category=group,
        source_image=examples[0].path,
        target_image=target.path,
        source_points=np.zeros((count, 2)),
        target_points=target.points,
        source_visible=labelled,
        target_visible=target.visible,
        keypoint_ids=np.arange(count),
        source_box=np.zeros(4),
        target_box=target.box,
        source_size=examples[0].size,
        target_size=target.size,
    )


def _confident(
    pairs: list[Pair],
    found: list[np.ndarray],
    confidences: list[np.ndarray],
    alphas: tuple[float, ...],
    threshold: ThresholdKind,
    pck: PCKSettings,
    min_confidence: float,
) -> dict[str, Any]:
    """Share of counted keypoints at or above ``min_confidence``, and their PCK (per keypoint)."""
    kept, correct = 0, np.zeros(len(alphas))
    total = sum(len(c) for c in confidences)
    for pair, points, confidence in zip(pairs, found, confidences):
        keep = confidence >= min_confidence
        frame = Frame.of("original", pair.target_size, None)  # as score_predictions measures
        length = frame.length(threshold, pair.target_box, pair.target_size)
        hits = frame.correct(points[keep], pair.counted_points()[1][keep], length, alphas, inclusive=pck.inclusive)
        kept += int(keep.sum())
        correct += hits.sum(axis=1)
    return {
        "min_confidence": min_confidence,
        "kept_percent": round(100.0 * kept / total, 2) if total else None,
        "pck_kept": {alpha_key(a): (round(100.0 * c / kept, 2) if kept else None) for a, c in zip(alphas, correct)},
    }
