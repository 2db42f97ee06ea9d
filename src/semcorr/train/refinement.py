"""Refinement of the student on known correspondences (``semcorr finetune-3d``).

Two sources of (source point, target point) pairs, one loop (:mod:`semcorr.train.engine`):

* a 3D pair file of ``semcorr make-3d-pairs``: exact correspondences between views of posed
  RGB-D sequences (CO3D), no labels (the paper's 3D augmentation);
* a benchmark's labelled keypoint pairs (``benchmark="spair"``, ``data_root``, ``split="trn"``):
  the supervised setting, through the benchmark loaders of :mod:`semcorr.data`.

Each step takes ``pairs_per_step`` pairs, at most ``points_per_pair`` of each pair's
correspondences (drawn at random), adds Gaussian noise of ``jitter`` times the target image's
longer side to the target points, and minimises :func:`~semcorr.train.losses.refinement_loss`
on the student's features: the soft-argmax (``beta``) of each source point over the target's
similarity map against its target point, the distance divided by the target image's longer side
(so the loss is a fraction of the image, whatever its resolution and the input size).

The run folder is a distillation's (config.json, checkpoint.pt, metrics.jsonl, adapter/), and so
are resume, ``torchrun`` and the metrics.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor

from ..data.benchmarks import get_benchmark, load_benchmark
from ..errors import InputError
from ..features.distill.student import StudentExtractor
from ..fileio import check_output_folder
from ..geometry import ImageGeometry
from ..threed.pairloader import open_3d_pairs
from .config import DEFAULT_BETA, FinetuneConfig
from .engine import RunContext, TrainResult, train_student
from .losses import refinement_loss

if TYPE_CHECKING:
    from ..features.backbones.dinov2 import DinoBackbone
from .pairing import epoch_generator, rank_share


@dataclass(frozen=True, eq=False)
class PointPair:
    """Two images and N known correspondences between them.

    Attributes:
        source_image, target_image: image files.
        source_xy, target_xy: (N, 2) float32 ``(x, y)`` in original pixels (image covers [0, W] x [0, H]).
        target_size: (H, W) of the target image.
    """

    source_image: Path
    target_image: Path
    source_xy: np.ndarray
    target_xy: np.ndarray
    target_size: tuple[int, int]


class PointPairs(Protocol):
    """Random access to :class:`PointPair` records (``len``, ``[i]``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> PointPair: ...


class _PairFilePairs:
    """The pairs of a ``make-3d-pairs`` file, read on access."""

    def __init__(self, path: Path) -> None:
        self.file = open_3d_pairs(path)

    def __len__(self) -> int:
        return len(self.file)

    def __getitem__(self, index: int) -> PointPair:
        pair = self.file[index]
        return PointPair(pair.source_image, pair.target_image, pair.source_xy, pair.target_xy, pair.target_size)


def open_point_pairs(pairs: str, data_root: str | None = None, split: str = "trn") -> PointPairs:
    """The training pairs of a :class:`FinetuneConfig`: a pair file (``pair_file``), or a
    benchmark's keypoint pairs (``benchmark`` with ``data_root``; each with its keypoints visible in
    both images; pairs without any are left out). Either is checked whole here, before training."""
    path = Path(pairs).expanduser()
    if path.is_file():
        return pair_file_pairs(path)
    try:
        benchmark = get_benchmark(pairs)
    except InputError:
        raise InputError(
            f"{pairs}: neither a pair file of `semcorr make-3d-pairs` nor a benchmark name (spair, pf-pascal, ...)"
        ) from None
    return benchmark_point_pairs(benchmark.name, data_root, split)


def pair_file_pairs(path: str | os.PathLike) -> PointPairs:
    """The pairs of a ``semcorr make-3d-pairs`` file (``--pair-file``), every point checked."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"--pair-file {path}: {'is a folder, not a pair file' if path.is_dir() else 'not found'}")
    found = _PairFilePairs(path)
    if len(found) == 0:
        raise InputError(f"{path}: the pair file has no pairs with correspondences; run `semcorr make-3d-pairs`")
    return found


def benchmark_point_pairs(name: str, data_root: str | None, split: str = "trn") -> PointPairs:
    """A benchmark's labelled keypoint pairs (``--benchmark``), each with its keypoints visible in
    both images; pairs without any are left out."""
    benchmark = get_benchmark(name)
    if not data_root:
        raise InputError(f"--benchmark {name}: give the benchmark's folder with --data-root")
    _, loaded = load_benchmark(benchmark, data_root, split)
    records = []
    for pair in loaded:
        source, target = pair.counted_points()
        if len(source):
            records.append(PointPair(pair.source_image, pair.target_image, source, target, pair.target_size))
    if not records:
        raise InputError(f"{data_root}: {benchmark.name} split {split!r} has no pair with visible keypoints")
    return records


def points_loss(
    features: Tensor,
    geometries: Sequence[ImageGeometry],
    source_xy: Sequence[Tensor],
    target_xy: Sequence[Tensor],
    beta: float,
) -> Tensor:
    """:func:`refinement_loss` of P pairs given in original pixels.

    Args:
        features: (2P, C, h, w) student features: the P sources, then the P targets.
        geometries: the 2P images' geometries (from ``student.preprocess``).
        source_xy: P tensors (N_i, 2) of points in the original source images' pixels.
        target_xy: P tensors (N_i, 2) of the matching points in the original target images' pixels.
        beta: the soft-argmax's inverse temperature.
    Returns:
        scalar: mean distance over all points, as a fraction of each target image's longer side.
    """
    count = len(source_xy)
    grid = (features.shape[-2], features.shape[-1])
    most = max(len(points) for points in source_xy)
    source = torch.zeros(count, most, 2)
    target = torch.zeros(count, most, 2)
    valid = torch.zeros(count, most, dtype=torch.bool)
    scale = torch.empty(count, 2)
    for b in range(count):
        n = len(source_xy[b])
        source_geometry, target_geometry = geometries[b], geometries[count + b]
        source[b, :n] = source_geometry.to_grid(source_xy[b].float(), grid)
        target[b, :n] = target_geometry.to_grid(target_xy[b].float(), grid)
        valid[b, :n] = True
        cell = target_geometry.from_grid(torch.ones(2), grid) - target_geometry.from_grid(torch.zeros(2), grid)
        scale[b] = cell / max(target_geometry.original_size)
    device = features.device
    return refinement_loss(
        features[:count],
        features[count:],
        source.to(device),
        target.to(device),
        beta=beta,
        scale=scale.to(device),
        valid=valid.to(device),
    )


@torch.no_grad()
def evaluate_refinement(student: StudentExtractor, pairs: PointPairs, *, beta: float = DEFAULT_BETA) -> float:
    """The refinement loss of ``student`` (eval mode, no noise, every point) averaged over ``pairs``."""
    was_training = student.training
    student.eval()
    losses = []
    for index in range(len(pairs)):
        pair = pairs[index]
        pixels, geometries = student.preprocess([pair.source_image, pair.target_image])
        features = student(pixels).float()
        losses.append(
            float(
                points_loss(
                    features,
                    geometries,
                    [torch.from_numpy(np.asarray(pair.source_xy))],
                    [torch.from_numpy(np.asarray(pair.target_xy))],
                    beta,
                )
            )
        )
    student.train(was_training)
    return float(np.mean(losses)) if losses else float("nan")


class RefineTask:
    """A refinement step: P pairs (one forward of 2P images), their sampled and jittered points,
    :func:`points_loss`. The pairs' order in an epoch, the points drawn and the noise depend only
    on (seed, epoch, pair), so resumed runs and any number of processes draw the same."""

    def __init__(
        self, config: FinetuneConfig, student: StudentExtractor, pairs: PointPairs, context: RunContext
    ) -> None:
        self.config, self.student, self.pairs = config, student, pairs
        self.rank, self.world_size = context.rank, context.world_size
        self.pairs_per_step = config.pairs_per_step
        self.steps_per_epoch = len(self._order(0)) // self.pairs_per_step
        if self.steps_per_epoch == 0:
            raise InputError(
                f"{len(pairs)} pairs make no step of {self.pairs_per_step} pairs on {self.world_size} processes"
            )
        self._share: tuple[int, list[int]] | None = None

    def _order(self, epoch: int) -> list[int]:
        order = torch.randperm(len(self.pairs), generator=epoch_generator(self.config.seed, epoch, "refine"))
        return rank_share(order.tolist(), self.rank, self.world_size)

    def _points(self, pair: PointPair, epoch: int, index: int) -> tuple[Tensor, Tensor]:
        generator = epoch_generator(self.config.seed, epoch, f"refine-points:{index}")
        source, target = torch.from_numpy(np.asarray(pair.source_xy)), torch.from_numpy(np.asarray(pair.target_xy))
        if len(source) > self.config.points_per_pair:
            keep = torch.randperm(len(source), generator=generator)[: self.config.points_per_pair]
            source, target = source[keep], target[keep]
        if self.config.jitter > 0:
            height, width = pair.target_size
            noise = torch.randn(target.shape, generator=generator) * (self.config.jitter * max(height, width))
            target = target + noise
            target = torch.stack((target[:, 0].clamp(0, width), target[:, 1].clamp(0, height)), dim=1)
        return source, target

    def loss(self, forward: Callable[[Tensor], Tensor], epoch: int, step: int) -> Tensor:
        if self._share is None or self._share[0] != epoch:
            self._share = (epoch, self._order(epoch))
        indices = self._share[1][step * self.pairs_per_step : (step + 1) * self.pairs_per_step]
        batch = [self.pairs[i] for i in indices]
        pixels, geometries = self.student.preprocess([p.source_image for p in batch] + [p.target_image for p in batch])
        assert isinstance(pixels, Tensor)  # the student's canvases: one batch, not the teacher's dict
        features = forward(pixels)
        points = [self._points(pair, epoch, index) for pair, index in zip(batch, indices)]
        return points_loss(features, geometries, [s for s, _ in points], [t for _, t in points], self.config.beta)


def refine_student(config: FinetuneConfig, backbone: DinoBackbone | None = None) -> StudentExtractor:
    """The student a run starts from: the backbone with ``config.adapter`` loaded (not merged), or
    with a new adapter."""
    return StudentExtractor(config.student_config(), random_weights=config.random_weights, backbone=backbone)


def finetune(
    config: FinetuneConfig,
    out: str | os.PathLike,
    *,
    backbone: DinoBackbone | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Refine the student's LoRA adapter on known correspondences; resumes from ``out/checkpoint.pt``.

    Args:
        config: the run's settings.
        out: the run folder.
        backbone: a transformers DINOv2 model to use instead of ``config.weights`` (tests).
        on_step: called as ``on_step(global_step, loss)`` after every optimiser step, on every rank.
    Returns:
        a :class:`~semcorr.train.engine.TrainResult`; the adapter is ``out/adapter``.

    Example:
        >>> config = FinetuneConfig(pair_file="co3d_pairs.h5", adapter="run/adapter")  # doctest: +SKIP
        >>> finetune(config, "run3d").adapter  # doctest: +SKIP
        PosixPath('run3d/adapter')
    """
    check_output_folder(out, what="run folder")  # before any work (train_student checks again, for every run)
    pairs = (
        pair_file_pairs(config.pair_file)
        if config.pair_file is not None
        else benchmark_point_pairs(config.benchmark or "", config.data_root, config.split)
    )
    return train_student(
        config,
        out,
        build_student=lambda: refine_student(config, backbone),
        make_task=lambda student, context: RefineTask(config, student, pairs, context),
        on_step=on_step,
    )
