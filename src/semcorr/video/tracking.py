"""Semantic point tracking through a video: points marked on one frame are found in every frame.

    for step in track_points("clip.mp4", [[120, 80], [200, 95]], model="dinov2-b-reg"):
        step.frame, step.points, step.confidence  # int, (N, 2) pixels, (N,) in [0, 1]

How it works: the source frame's features are computed once and the source points' descriptors
sampled from them. Frames are decoded as a stream (never the whole video in memory), their
features extracted in batches, and each point found in each frame by window soft-argmax over its
similarity map (:class:`~semcorr.matching.MatchSettings`). Each frame is matched independently
against the source frame (no motion model), so a point lost in one frame is not lost for good.

Confidence is cycle consistency: the descriptor at the found point is matched back into the
source frame, and the distance ``e`` (source pixels) between where it lands and the original
point measures agreement. ``confidence = exp(-0.5 * (e / tau) ** 2)`` with
``tau = cycle_tolerance * max(H, W)`` of the source frame (default 5 %): 1 when the match returns
exactly, 0.61 at ``e = tau``, 0.14 at ``2 tau``. ``score`` is the forward cosine similarity.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..features.base import Extractor, FeatureMap
from ..features.config import DEFAULT_MODEL
from ..features.registry import build_extractor
from ..fileio import check_output_file, write_atomically, write_json
from ..images import check_points
from ..matching.kernels import sample_descriptors, similarity_maps
from ..matching.points import MatchSettings, locate
from ..runtime import fast_precision, resolve_device
from ..settings import ON_ERROR, OnError, check_choice, check_int, check_number, fail
from .io import VIDEO_FORMATS, VideoWriter, draw_points, iter_frames, read_frame, video_info

TRACK_FIELDS = ("frame", "point", "x", "y", "confidence", "score", "cycle_error")
TRACK_SUFFIXES = (".json", ".csv")


@dataclass(frozen=True)
class TrackSettings:
    """How points are tracked through a video.

    Attributes:
        source_frame: the frame (0-based) on which the points are given.
        batch_size: frames per feature-extraction batch.
        match: point transfer settings (grid, window soft-argmax, temperature).
        cycle_tolerance: ``tau`` of the confidence, as a fraction of the source frame's longer side.
        max_frames: stop after this many frames (``None``: the whole video).
        prefetch: frames decoded ahead in a background thread.
        on_error: a frame that cannot be decoded (a damaged or cut file) is reported and skipped
            (``skip``) or stops the run (``stop``).
    """

    OPTIONS: ClassVar[dict[str, str]] = {"source_frame": "--frame"}

    source_frame: int = 0
    batch_size: int = 8
    match: MatchSettings = field(default_factory=MatchSettings)
    cycle_tolerance: float = 0.05
    max_frames: int | None = None
    prefetch: int = 16
    on_error: OnError = "skip"

    def __post_init__(self) -> None:
        check_int(self, "source_frame", minimum=0)
        check_int(self, "batch_size", minimum=1)
        if not isinstance(self.match, MatchSettings):
            raise fail(self, "match", "must be a MatchSettings")
        check_number(self, "cycle_tolerance", above=0)
        check_int(self, "max_frames", minimum=1, optional=True, none_means="for the whole video")
        check_int(self, "prefetch", minimum=0)
        check_choice(self, "on_error", ON_ERROR)


@dataclass(frozen=True)
class FrameTracks:
    """The tracked points in one frame.

    Attributes:
        frame: frame index (0-based).
        points: (N, 2) positions (x, y) in frame pixels.
        confidence: (N,) cycle-consistency confidence in [0, 1] (see the module docstring).
        score: (N,) cosine similarity of the source descriptor at the found position.
        cycle_error: (N,) distance in source pixels between a source point and its cycle match.
        image: the decoded (H, W, 3) uint8 frame when asked for (``keep_frames``), else ``None``.
    """

    frame: int
    points: Tensor
    confidence: Tensor
    score: Tensor
    cycle_error: Tensor
    image: np.ndarray | None = None

    def rows(self) -> list[dict[str, float | int]]:
        """One dict per point with the keys of :data:`TRACK_FIELDS`."""
        return [
            {
                "frame": self.frame,
                "point": i,
                "x": round(float(p[0]), 3),
                "y": round(float(p[1]), 3),
                "confidence": round(float(c), 4),
                "score": round(float(s), 4),
                "cycle_error": round(float(e), 3),
            }
            for i, (p, c, s, e) in enumerate(
                zip(self.points.tolist(), self.confidence.tolist(), self.score.tolist(), self.cycle_error.tolist())
            )
        ]


def frame_tensor(frame: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(frame).permute(2, 0, 1).float().div_(255.0)


class PointTracker:
    """Finds a fixed set of source points in any number of frames, batch by batch.

    Usable on a live stream too: call :meth:`set_source` once, then :meth:`track` per batch.
    """

    def __init__(self, extractor: Extractor, settings: TrackSettings = TrackSettings()) -> None:
        self.extractor = extractor
        self.settings = settings
        self._source: FeatureMap | None = None

    def set_source(self, image: Tensor, points: Tensor) -> None:
        """Compute the source features once.

        Args:
            image: (3, H, W) source frame in [0, 1].
            points: (N, 2) source points (x, y) in its pixels (already checked).
        """
        self._source = self.extractor.extract([image]).upsample(self.settings.match.grid)
        geometry = self._source.geometries[0]
        self._points = points.to(self._source.features.device, torch.float32)
        grid_points = geometry.to_grid(self._points, self._source.grid_size)[None]  # (1, N, 2)
        self._descriptors = sample_descriptors(self._source.features, grid_points)  # (1, N, C)
        self._tau = self.settings.cycle_tolerance * max(geometry.original_size)

    def _find(self, descriptors: Tensor, target: FeatureMap) -> tuple[Tensor, Tensor]:
        """(B, N, C) descriptors in B target maps -> (B, N, 2) grid positions, (B, N) scores."""
        return locate(similarity_maps(descriptors, target.features), self.settings.match, target.valid_cells())

    def track(self, frames: Sequence[Tensor]) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Find the source points in a batch of frames.

        Args:
            frames: B tensors (3, H, W) in [0, 1].
        Returns:
            per frame: (N, 2) points in frame pixels, (N,) confidence, (N,) score, (N,) cycle error.
        """
        if self._source is None:
            raise RuntimeError("call set_source() before track()")
        target = self.extractor.extract(list(frames)).upsample(self.settings.match.grid)
        batch = len(target)
        found, score = self._find(self._descriptors.expand(batch, -1, -1), target)  # grid of target
        back_descriptors = sample_descriptors(target.features, found)  # (B, N, C)
        source = FeatureMap(
            self._source.features.expand(batch, -1, -1, -1),
            self._source.geometries * batch,
            self._source.model,
            self._source.random_weights,
        )
        back, _ = self._find(back_descriptors, source)
        geometry = self._source.geometries[0]
        cycle_error = (geometry.from_grid(back, source.grid_size) - self._points).norm(dim=-1)  # (B, N)
        confidence = torch.exp(-0.5 * (cycle_error / self._tau) ** 2)
        results = []
        for i, frame_geometry in enumerate(target.geometries):
            pixels = frame_geometry.from_grid(found[i], target.grid_size)
            results.append((pixels.cpu(), confidence[i].cpu(), score[i].cpu(), cycle_error[i].cpu()))
        return results


def _batches(frames: Iterator[tuple[int, np.ndarray]], size: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    batch: list[tuple[int, np.ndarray]] = []
    for item in frames:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def track_points(
    video: str | os.PathLike,
    points: Sequence[Sequence[float]] | Tensor,
    *,
    model: str | Extractor = DEFAULT_MODEL,
    settings: TrackSettings = TrackSettings(),
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    keep_frames: bool = False,
    **overrides: Any,
) -> Iterator[FrameTracks]:
    """Track ``points`` given on frame ``settings.source_frame`` through every frame of ``video``.

    The video, frame index and points are checked and the source features computed before this
    returns; frames are then decoded and tracked lazily as the iterator is consumed.

    Args:
        video: path of a video file (anything FFmpeg reads).
        points: (N, 2) points (x, y) in the source frame's pixels.
        model: a preset name or an :class:`Extractor`; ``weights``, ``random_weights``, ``device``
            and ``**overrides`` (e.g. ``precision="fp32"``) build the preset, by default with the
            fast precision (see :func:`build_tracking_extractor`).
        keep_frames: also return each decoded frame (``FrameTracks.image``), e.g. to draw on it.
    Returns:
        an iterator of :class:`FrameTracks`, one per frame in order.
    """
    source_image, source_points = _source(video, points, settings)
    extractor = build_tracking_extractor(
        model, weights=weights, random_weights=random_weights, device=device, **overrides
    )
    tracker = PointTracker(extractor, settings)
    tracker.set_source(frame_tensor(source_image), source_points)
    return _track(tracker, video, settings, keep_frames)


def _source(
    video: str | os.PathLike, points: Sequence[Sequence[float]] | Tensor, settings: TrackSettings
) -> tuple[np.ndarray, Tensor]:
    """The decoded source frame and the checked (N, 2) source points."""
    image = read_frame(video, settings.source_frame)
    checked = check_points(points, image.shape[:2], image=f"frame {settings.source_frame} of {os.fsdecode(video)}")
    return image, checked


def build_tracking_extractor(
    model: str | Extractor,
    *,
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    compile: bool = False,
    **overrides: Any,
) -> Extractor:
    """The extractor for tracking: a preset built with the fast precision for the device
    (:func:`semcorr.runtime.fast_precision`: bf16 autocast where the hardware has native bf16) unless
    ``precision`` is given; ``compile`` applies ``torch.compile``. An Extractor is used as it is."""
    if isinstance(model, Extractor):
        extractor = model
    else:
        overrides.setdefault("precision", fast_precision(resolve_device(device)))
        extractor = build_extractor(model, weights=weights, random_weights=random_weights, device=device, **overrides)
    if compile:
        extractor.compile()
    return extractor


def _track(
    tracker: PointTracker, video: str | os.PathLike, settings: TrackSettings, keep_frames: bool
) -> Iterator[FrameTracks]:
    frames = iter_frames(video, stop=settings.max_frames, prefetch=settings.prefetch, on_error=settings.on_error)
    for batch in _batches(frames, settings.batch_size):
        results = tracker.track([frame_tensor(image) for _, image in batch])
        for (index, image), (points, confidence, score, error) in zip(batch, results):
            yield FrameTracks(index, points, confidence, score, error, image if keep_frames else None)


def write_tracks(path: str | os.PathLike, rows: list[dict[str, Any]], header: dict[str, Any]) -> None:
    """Write tracks (atomically) as CSV (``.csv``: the columns of :data:`TRACK_FIELDS`) or JSON
    (``header`` plus ``"tracks": rows``)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=TRACK_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(path, text.getvalue())
    else:
        write_json(path, {**header, "tracks": rows}, indent=1)


def run_video(
    video: str | os.PathLike,
    points: Sequence[Sequence[float]],
    *,
    out: str | os.PathLike | None = None,
    tracks: str | os.PathLike | None = None,
    model: str | Extractor = DEFAULT_MODEL,
    settings: TrackSettings = TrackSettings(),
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    compile: bool = False,
    progress: bool = True,
    trail: int = 12,
    **overrides: Any,
) -> dict[str, Any]:
    """Track points, write the annotated video (``out``) and the tracks file (``tracks``).

    Returns:
        a summary: ``frames``, ``seconds`` (decode, features, matching, drawing and encoding; the
        model build and source features excluded), ``fps``, ``setup_seconds``, ``model``, ...
    """
    if out is not None:
        check_output_file(out, suffixes=tuple(VIDEO_FORMATS), what="annotated video")
    if tracks is not None:
        check_output_file(tracks, suffixes=TRACK_SUFFIXES, what="tracks file")
    started = time.perf_counter()
    info = video_info(video)
    source_image, source_points = _source(video, points, settings)
    extractor = build_tracking_extractor(
        model, weights=weights, random_weights=random_weights, device=device, compile=compile, **overrides
    )
    tracker = PointTracker(extractor, settings)
    tracker.set_source(frame_tensor(source_image), source_points)
    steps = _track(tracker, video, settings, keep_frames=out is not None)
    setup = time.perf_counter() - started
    total = info.frames if settings.max_frames is None else min(info.frames or settings.max_frames, settings.max_frames)
    rows: list[dict[str, Any]] = []
    history: list[list[list[float]]] = [[] for _ in range(len(source_points))]
    started = time.perf_counter()
    with (
        VideoWriter(out, info.fps) if out is not None else contextlib.nullcontext() as writer,
        tqdm(total=total or None, unit="frame", disable=not progress, desc="tracking") as bar,
    ):
        for step in steps:
            rows.extend(step.rows())
            if writer is not None:
                assert step.image is not None  # kept for the writer (keep_frames)
                for i, p in enumerate(step.points.tolist()):
                    history[i] = (history[i] + [p])[-trail:]
                writer.write(draw_points(step.image, step.points.tolist(), step.confidence.tolist(), history))
            bar.update(1)
    seconds = time.perf_counter() - started
    frames = len(rows) // len(source_points)
    summary = {
        "video": os.fsdecode(video),
        "frames": frames,
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 3) if seconds > 0 else math.inf,
        "setup_seconds": round(setup, 3),
        "model": extractor.name,
        "random_weights": extractor.random_weights,
        "device": str(extractor.device),
        "precision": extractor.config.precision,
    }
    if tracks is not None:
        header = {
            "video": os.fsdecode(video),
            "model": extractor.name,
            "random_weights": extractor.random_weights,
            "source_frame": settings.source_frame,
            "points": source_points.tolist(),
            "frame_size": [info.width, info.height],
            "fps": float(info.fps),
            "frames": frames,
            "confidence": "exp(-0.5 (e / tau)^2): e = cycle-consistency error in source pixels, "
            f"tau = {settings.cycle_tolerance} x the source frame's longer side",
            "settings": {"tracking": asdict(settings), "extractor": asdict(extractor.config)},
        }
        write_tracks(tracks, rows, header)
    return summary
