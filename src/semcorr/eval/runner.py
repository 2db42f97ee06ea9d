"""Run a benchmark: load pairs, extract features once per image, transfer keypoints, score PCK.

    from semcorr.eval import evaluate, evaluate_models
    result = evaluate("pf-willow", "data/PF-WILLOW", model="baseline")
    result["pck"]            # {"0.05": ..., "0.1": ..., "0.15": ...} in percent
    result["per_category"]   # {"car": {"n_pairs": 270, "pck": {...}, ...}, ...}
    results = evaluate_models("spair", "SPair-71k", ["marco", "diy-sc", "geco"], protocol="common")

``protocol`` names the rules (:mod:`.protocols`). The default, ``semcorr``, is semcorr's own:
images at the model's own input (434 x 434 stretch for the DistillDIFT student), features upsampled
to 60 x 60, 11 x 11 window soft-argmax (DistillDIFT's matching settings), PCK of the target box's
longer side (the image's for PF-PASCAL) averaged per keypoint, a keypoint correct when its distance
is <= alpha * L, measured in original target-image pixels, where the annotations live (the
benchmarks' own definition); keypoints annotated outside their image are left out with a warning.
``distilldift-paper``, ``marco``, ``diy-sc`` and ``geco`` are those authors' code, frame, threshold
scale and arithmetic included, and count keypoints outside the image as their code does;
``common`` is one rule for every model. The result is a versioned results file (:mod:`.result`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data.benchmarks import get_benchmark
from ..data.pairs import Pair
from ..data.symmetry import mirror_partner_rows
from ..errors import InputError
from ..features.base import Extractor
from ..features.config import DEFAULT_MODEL
from ..features.registry import resolve_extractor
from ..matching.points import MatchSettings, transfer_points
from ..matching.pose_align import align_sources
from .cache import CacheMode, FeatureCache
from .pck import PCKSettings
from .protocol_match import predict_with
from .protocols import DEFAULT_PROTOCOL, PaperProtocol, Protocol, pair_frames, resolve_protocol
from .result import (
    RESULT_SET_FORMAT,
    RESULT_VERSION,
    Clock,
    make_result,
    open_benchmark,
    pck_settings,
    pck_text,
    score_predictions,
)

POSE_ALIGN_RULE = (
    "per pair, the mirrored source where the mean feature distance of its mutual nearest "
    "neighbours with the target (native grid) is lower, keypoints looked up at their left/right "
    "partner's mirrored position (GeoAware-SC's adaptive pose alignment, mutual-NN variant)"
)


def predict(
    store: FeatureCache,
    pairs: Sequence[Pair],
    settings: MatchSettings,
    batch_size: int = 8,
    progress: bool = True,
    *,
    pose_align: bool = False,
) -> list[np.ndarray]:
    """Transfer each pair's counted source keypoints into its target image.

    Args:
        pose_align: match each pair from its source or from the mirrored source, whichever agrees
            better with the target (:mod:`semcorr.matching.pose_align`); the store must hold the sources'
            mirrored features (``store.compute(..., flipped=sources)``).
    Returns:
        one (M_i, 2) float64 array of predicted target points (x, y) per pair.
    """
    return _predict(store, pairs, settings, batch_size, progress, pose_align)[0]


def _predict(
    store: FeatureCache,
    pairs: Sequence[Pair],
    settings: MatchSettings,
    batch_size: int,
    progress: bool,
    pose_align: bool,
) -> tuple[list[np.ndarray], list[bool]]:
    """:func:`predict`, and per pair whether it was matched from the mirrored source."""
    found: list[np.ndarray] = []
    flipped: list[bool] = [False] * len(pairs)
    with tqdm(total=len(pairs), desc="matching", unit="pair", disable=not progress) as bar:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            sources = [pair.counted_points()[0] for pair in chunk]
            longest = max(len(points) for points in sources)
            if longest:
                points = torch.zeros(len(chunk), longest, 2)  # padded with (0, 0); padding is dropped below
                for i, counted in enumerate(sources):
                    points[i, : len(counted)] = torch.from_numpy(counted)
                with torch.inference_mode():
                    source_images, target_images = [p.source_image for p in chunk], [p.target_image for p in chunk]
                    if pose_align:  # decided on the native grid, as DistillDIFT; transfer_points upsamples
                        target = store.feature_map(target_images)
                        source, points, orientation = align_sources(
                            store.feature_map(source_images),
                            store.feature_map(source_images, flipped=True),
                            target,
                            points,
                            _partner_rows(chunk, longest),
                        )
                        flipped[start : start + len(chunk)] = orientation.flipped.tolist()
                    else:
                        source = store.feature_map(source_images, settings.grid)
                        target = store.feature_map(target_images, settings.grid)
                    transfer = transfer_points(source, target, points, settings)
                result = transfer.points.cpu().numpy().astype(np.float64)
            found += [result[i, : len(source)] if len(source) else np.zeros((0, 2)) for i, source in enumerate(sources)]
            bar.update(len(chunk))
    return found, flipped


def _partner_rows(pairs: Sequence[Pair], length: int) -> torch.Tensor:
    """(B, length) int64: each counted keypoint's left/right partner row (padding rows: their own)."""
    rows = torch.arange(length).repeat(len(pairs), 1)
    for i, pair in enumerate(pairs):
        partners = mirror_partner_rows(pair)
        rows[i, : len(partners)] = torch.from_numpy(partners)
    return rows


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")


def protocol_rules(
    protocol: Protocol, settings: MatchSettings, pck: PCKSettings, pose_align: bool
) -> tuple[Protocol, PCKSettings]:
    """The protocol as it will run and its PCK settings: ``semcorr`` takes the match and PCK
    settings given; the others fix them (only the thresholds ``alphas`` may be chosen)."""
    if protocol.name == DEFAULT_PROTOCOL:
        window = settings.method == "window_soft_argmax"
        return dataclasses.replace(
            protocol,
            grid=str(settings.grid or "native"),
            matcher=settings.method,
            window=settings.window if window else None,
            temperature=settings.temperature if window else None,
            average=pck.average,
            inclusive=pck.inclusive,
            threshold=pck.threshold,
        ), pck
    if settings != MatchSettings():
        raise InputError(
            f"--protocol {protocol.name} fixes the matching; --grid, --method, --window and --temperature "
            f"apply to --protocol {DEFAULT_PROTOCOL}"
        )
    if dataclasses.replace(pck, alphas=None) != PCKSettings():
        raise InputError(
            f"--protocol {protocol.name} fixes the PCK rules; --threshold, --average and --strict apply to "
            f"--protocol {DEFAULT_PROTOCOL} (--alpha to all)"
        )
    if pose_align and protocol.matcher != "window_soft_argmax":
        raise InputError(
            f"--pose-align works with the window soft-argmax protocols ({DEFAULT_PROTOCOL}, common), "
            f"not with --protocol {protocol.name}"
        )
    return protocol, PCKSettings(
        alphas=pck.alphas, threshold=protocol.threshold, average=protocol.average, inclusive=protocol.inclusive
    )


def _input_overrides(protocol: Protocol, model: str | Extractor, overrides: dict[str, Any]) -> dict[str, Any]:
    """The extractor settings with the protocol's input size and resize mode (a different one given is refused)."""
    if protocol.input_size is None:
        return overrides
    wanted = {"input_size": protocol.input_size, "resize_mode": protocol.resize_mode}
    for key, value in wanted.items():
        given = getattr(model.config, key) if isinstance(model, Extractor) else overrides.get(key)
        if given is not None and given != value:
            raise InputError(
                f"--protocol {protocol.name} runs every model at {protocol.input_size}² "
                f"{protocol.resize_mode}; {key} {given} was given"
            )
    return overrides if isinstance(model, Extractor) else {**overrides, **wanted}


def evaluate(
    benchmark: str,
    data_root: str | Path,
    *,
    model: str | Extractor = DEFAULT_MODEL,
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    split: str | None = None,
    protocol: str | Protocol | PaperProtocol = DEFAULT_PROTOCOL,
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
    **overrides: Any,
) -> dict[str, Any]:
    """Evaluate a model on a benchmark.

    Args:
        benchmark: ``spair``, ``pf-willow``, ``pf-pascal``, ``cub``, ``ap10k-intra-species``,
            ``ap10k-cross-species`` or ``ap10k-cross-family`` (see :data:`BENCHMARKS`).
        data_root: the benchmark's folder in its official layout.
        model: a preset name or an :class:`Extractor`; ``weights``, ``random_weights``,
            ``device`` and ``**overrides`` (extractor config fields) build the preset.
        split: default: the split papers report (``test``).
        protocol: ``semcorr`` (default), ``distilldift-paper``, ``marco``, ``diy-sc``, ``geco`` or
            ``common`` (:mod:`.protocols`; ``distilldift`` is an old name of ``semcorr``); the
            authors' protocols also fix the input size and resize mode.
        settings: point transfer settings of the ``semcorr`` protocol (default: DistillDIFT's).
        pck: scoring settings (default: the benchmark's thresholds, per keypoint, ``<=``); other
            protocols fix all but ``alphas``.
        limit: evaluate only the first ``limit`` pairs.
        batch_size: images per extractor call and pairs per matching call.
        cache: ``memory``, ``disk`` or ``auto`` features (see :class:`FeatureCache`).
        cache_dir: keep disk features here and reuse them in later runs.
        loader_options: passed to the loader (``layout="small"`` for SPair, ``crowd_file`` for AP-10K...).
        predictions: also return ``"predictions"``: per pair, counted keypoints only, what an independent
            check needs (:func:`~.result.score_predictions`; + ``"flipped"`` with ``pose_align``).
        progress: show progress bars (stderr).
        pose_align: the weakly supervised setting of GeoAware-SC: also extract every source image
            mirrored (once per image) and match each pair from the orientation whose mutual nearest
            neighbours with the target agree best (:mod:`semcorr.matching.pose_align`).
    Returns:
        a results file (:func:`~.result.make_result`): ``{"format", "version", "semcorr_version",
        "benchmark", "split", "pairs_digest", "model", "weights_digest", "random_weights", "n_pairs",
        "n_keypoints", "pck": {"0.1": percent, ...}, "pck_per_keypoint", "pck_per_image", "pck_category_mean",
        "per_category": {name: {"n_pairs", "n_keypoints", "pck", "per_keypoint", "per_image"}},
        "chance", "pose_align": {"enabled", "n_flipped", ...}, "protocol": {"name", every rule,
        "summary", "pck"}, "settings", "timing", "wall_time_s", ...}``.
    """
    clock = Clock()
    rules, pck = protocol_rules(resolve_protocol(protocol, get_benchmark(benchmark).name), settings, pck, pose_align)
    _check_batch_size(batch_size)
    if isinstance(model, Extractor) and (weights is not None or random_weights or overrides):
        raise InputError("weights, random_weights and extractor settings apply to a preset name, not to an Extractor")
    overrides = _input_overrides(rules, model, overrides)
    run = open_benchmark(
        benchmark, data_root, split=split, limit=limit, pck=pck, loader_options=loader_options, outside=rules.outside
    )
    pairs = run.pairs
    if not pairs:
        raise InputError(f"{data_root}: no {run.spec.title} {run.split} pairs found")
    extractor = resolve_extractor(model, weights=weights, random_weights=random_weights, device=device, **overrides)
    clock.lap("load")
    images = list(dict.fromkeys(path for pair in pairs for path in (pair.source_image, pair.target_image)))
    mirrored = list(dict.fromkeys(pair.source_image for pair in pairs)) if pose_align else []
    matching = settings if rules.name == DEFAULT_PROTOCOL else None
    if rules.name != DEFAULT_PROTOCOL and rules.matcher == "window_soft_argmax":  # common
        grid, window = rules.common_grid(extractor.grid_size()[0])
        assert rules.temperature is not None  # every window_soft_argmax protocol sets one
        matching = MatchSettings(grid=grid, window=window, temperature=rules.temperature)
    with FeatureCache(extractor, mode=cache, cache_dir=cache_dir, batch_size=batch_size, progress=progress) as store:
        store.compute(images, flipped=mirrored)
        clock.lap("features")
        if matching is not None:
            found, flipped = _predict(store, pairs, matching, batch_size, progress, pose_align)
        else:
            found, flipped = predict_with(rules, store, pairs, batch_size, progress), [False] * len(pairs)
        cache_used, cache_folder, computed = store.mode, store.folder, store.computed
    clock.lap("matching")

    frames = [pair_frames(rules, pair, extractor.config.input_size)[1] for pair in pairs]
    scores, records = score_predictions(
        pairs, found, run.alphas, run.threshold, pck, predictions=predictions, frames=frames
    )
    alignment: dict[str, Any] = {"enabled": pose_align, "n_flipped": sum(flipped) if pose_align else None}
    if pose_align:
        alignment.update(n_mirrored_images=len(mirrored), rule=POSE_ALIGN_RULE)
        for record, flip in zip(records, flipped):
            record["flipped"] = flip
    clock.lap("scoring")
    run_settings: dict[str, Any] = {
        "matching": dataclasses.asdict(matching) if matching is not None else None,
        "pck": pck_settings(run, pck),
        "batch_size": batch_size,
        "limit": limit,
        "feature_cache": cache_used,
        "pose_align": pose_align,
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "loader_options": {k: str(v) for k, v in run.loader_options.items()},
    }
    if cache_folder is not None and cache_dir is not None:
        run_settings["cache_folder"] = str(cache_folder)
    return make_result(
        run,
        extractor,
        title=run.spec.title,
        protocol={
            **rules.fields(),
            "summary": rules.summary(),
            "pck": pck_text(
                pck,
                run.alphas,
                run.threshold,
                rules.frame,
                side=rules.frame_size or extractor.config.input_size,
                length_rule=rules.length_rule,
            ),
        },
        scores=scores,
        n_images=len(images),
        settings=run_settings,
        clock=clock,
        images_computed=computed,
        records=records if predictions else None,
        n_pairs_in_split=run.total_pairs,
        pose_align=alignment,
    )


def evaluate_models(benchmark: str, data_root: str | Path, models: Sequence[str], **options: Any) -> dict[str, Any]:
    """:func:`evaluate` several presets in turn under the same protocol and options (each model is
    built, evaluated and freed before the next).

    ``options`` are :func:`evaluate`'s, except ``weights`` and ``adapter`` (one model's files).

    Returns:
        a results set: ``{"format": "semcorr-result-set", "version", "benchmark", "protocol",
        "results": [one evaluate() result per model]}`` (``semcorr compare`` reads it).
    """
    models = list(dict.fromkeys(models))
    if not models:
        raise InputError("--models needs at least one model")
    given = sorted(key for key in ("weights", "adapter", "backbone") if options.get(key) is not None)
    if len(models) > 1 and given:
        raise InputError(
            f"{', '.join('--' + key for key in given)} name one model's files; evaluate that model alone "
            "(--model) or drop them"
        )
    results = [evaluate(benchmark, data_root, model=name, **options) for name in models]
    return {
        "format": RESULT_SET_FORMAT,
        "version": RESULT_VERSION,
        "benchmark": results[0]["benchmark"],
        "protocol": results[0]["protocol"],
        "results": results,
    }
