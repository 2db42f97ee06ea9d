"""Refinement of the student on known correspondences (``semcorr finetune-3d``).

Two sources of (source point, target point) pairs, one loop (:mod:`semcorr.train.engine`):

* a 3D pair file of ``semcorr make-3d-pairs``: exact correspondences between views of posed
  RGB-D sequences (CO3D), no labels (the paper's 3D augmentation);
* a benchmark's labelled keypoint pairs (``pairs="spair"``, ``data_root``, ``split="trn"``):
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InputError
from ..features.student import StudentConfig, StudentExtractor
from ..geometry import ImageGeometry
from .engine import RunContext, TrainResult, config_digest, train_student
from .losses import DEFAULT_BETA, refinement_loss
from .pairing import epoch_generator, rank_share

RUN_FORMAT = "semcorr-finetune-run"


@dataclass(frozen=True)
class FinetuneConfig:
    """Every setting of a refinement run (saved as ``RUN/config.json``).

    Attributes:
        pairs: a pair file of ``semcorr make-3d-pairs``, or a benchmark name (``spair``, ...) whose
            labelled keypoint pairs of ``split`` are used (supervised setting).
        data_root: the benchmark's folder (with a benchmark name in ``pairs``).
        split: the benchmark split (``trn`` for SPair-71k).
        adapter: the adapter to start from (e.g. ``RUN/adapter`` of ``semcorr distill``); ``None``:
            a new adapter (B = 0), i.e. the plain backbone. A given adapter brings its own LoRA
            rank, alpha and dropout (``lora_*`` then apply to nothing).
        weights: the student backbone's weights (HF id, folder or .pth; default the official one).
        random_weights: untrained student backbone (timing, tests).
        input_size: student input side in pixels (434 -> 31x31 patches).
        beta: inverse temperature of the soft-argmax over the cosine similarity map.
        points_per_pair: use at most this many correspondences of a pair per step, drawn at random.
        jitter: std of Gaussian noise on the target points, as a fraction of the target image's
            longer side (0.03: about one cell of the 31x31 grid, like the official code's one-cell
            noise); 0 for exact targets.
        epochs: passes over the pairs.
        lr: AdamW learning rate (1e-4: the official code's for soft-argmax training of the LoRA).
        weight_decay: AdamW weight decay (0, as the official code's soft-argmax training).
        lr_decay_epoch: multiply the lr by ``lr_decay`` from this epoch on (0-based).
        lr_decay: the factor (1: a constant lr, as the official code's).
        lora_rank, lora_alpha, lora_dropout: a new adapter (when ``adapter`` is ``None``).
        pairs_per_step: pairs per optimiser step per process.
        seed: fixes the LoRA init, the order of the pairs, the points drawn, the noise, the dropout.
        precision: ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``fp32`` or ``bf16``.
        device: ``auto``, ``cpu``, ``cuda`` (each process takes ``cuda:LOCAL_RANK``).
        checkpoint_every: steps between checkpoints (also at every epoch's end).
        log_every: steps between metrics lines.
        progress: show a progress bar (rank 0).
    """

    pairs: str | None = None
    data_root: str | None = None
    split: str = "trn"
    adapter: str | None = None
    weights: str | None = None
    random_weights: bool = False
    input_size: int = 434
    beta: float = DEFAULT_BETA
    points_per_pair: int = 512
    jitter: float = 0.03
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_decay_epoch: int = 5
    lr_decay: float = 1.0
    lora_rank: int = 8
    lora_alpha: float = 8.0
    lora_dropout: float = 0.05
    pairs_per_step: int = 1
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = "auto"
    checkpoint_every: int = 200
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.pairs:
            raise InputError("finetune-3d needs --pairs: a pair file of `semcorr make-3d-pairs`, "
                             "or a benchmark name (spair) with --data-root")
        positive = {"epochs": self.epochs, "lr": self.lr, "beta": self.beta, "points_per_pair": self.points_per_pair,
                    "pairs_per_step": self.pairs_per_step, "checkpoint_every": self.checkpoint_every,
                    "log_every": self.log_every, "input_size": self.input_size}
        for name, value in positive.items():
            if not value > 0:
                raise InputError(f"finetune-3d: --{name.replace('_', '-')} must be positive, got {value}")
        if not self.jitter >= 0:
            raise InputError(f"finetune-3d: --jitter must be 0 or more, got {self.jitter}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"finetune-3d: --precision must be auto, fp32 or bf16, got {self.precision!r}")

    def digest(self) -> str:
        """Hash of the settings that change the result (operational ones excluded)."""
        return config_digest(self)


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
        from ..threed import open_3d_pairs

        self.file = open_3d_pairs(path)

    def __len__(self) -> int:
        return len(self.file)

    def __getitem__(self, index: int) -> PointPair:
        pair = self.file[index]
        return PointPair(pair.source_image, pair.target_image, pair.source_xy, pair.target_xy, pair.target_size)


def open_point_pairs(pairs: str, data_root: str | None = None, split: str = "trn") -> PointPairs:
    """The training pairs of a :class:`FinetuneConfig`: a pair file, or a benchmark's keypoint pairs
    (each with its keypoints visible in both images; pairs without any are left out)."""
    path = Path(pairs).expanduser()
    if path.is_file():
        found = _PairFilePairs(path)
        if len(found) == 0:
            raise InputError(f"{path}: the pair file has no pairs with correspondences; run `semcorr make-3d-pairs`")
        return found
    from ..eval.benchmarks import get_benchmark, load_benchmark

    try:
        benchmark = get_benchmark(pairs)
    except InputError:
        raise InputError(f"--pairs {pairs}: neither a pair file of `semcorr make-3d-pairs` nor a benchmark "
                         "name (spair, pf-pascal, ...)") from None
    if not data_root:
        raise InputError(f"--pairs {pairs}: give the benchmark's folder with --data-root")
    _, loaded = load_benchmark(benchmark, data_root, split)
    records = []
    for pair in loaded:
        source, target = pair.counted_points()
        if len(source):
            records.append(PointPair(pair.source_image, pair.target_image, source, target, pair.target_size))
    if not records:
        raise InputError(f"{data_root}: {benchmark.name} split {split!r} has no pair with visible keypoints")
    return records


def points_loss(features: Tensor, geometries: Sequence[ImageGeometry], source_xy: Sequence[Tensor],
                target_xy: Sequence[Tensor], beta: float) -> Tensor:
    """:func:`refinement_loss` of P pairs given in original pixels.

    Args:
        features: (2P, C, h, w) student features: the P sources, then the P targets.
        geometries: the 2P images' geometries (from ``student.preprocess``).
        source_xy, target_xy: P tensors (N_i, 2) of points in the original images' pixels.
        beta: the soft-argmax's inverse temperature.
    Returns:
        scalar: mean distance over all points, as a fraction of each target image's longer side.
    """
    count = len(source_xy)
    grid = tuple(features.shape[-2:])
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
    return refinement_loss(features[:count], features[count:], source.to(device), target.to(device), beta=beta,
                           scale=scale.to(device), valid=valid.to(device))


@torch.no_grad()
def evaluate_refinement(student: StudentExtractor, pairs: PointPairs, *,
                        beta: float = DEFAULT_BETA) -> float:
    """The refinement loss of ``student`` (eval mode, no noise, every point) averaged over ``pairs``."""
    was_training = student.training
    student.eval()
    losses = []
    for index in range(len(pairs)):
        pair = pairs[index]
        pixels, geometries = student.preprocess([pair.source_image, pair.target_image])
        features = student(pixels).float()
        losses.append(float(points_loss(features, geometries, [torch.from_numpy(np.asarray(pair.source_xy))],
                                        [torch.from_numpy(np.asarray(pair.target_xy))], beta)))
    student.train(was_training)
    return float(np.mean(losses)) if losses else float("nan")


class RefineTask:
    """A refinement step: P pairs (one forward of 2P images), their sampled and jittered points,
    :func:`points_loss`. The pairs' order in an epoch, the points drawn and the noise depend only
    on (seed, epoch, pair), so resumed runs and any number of processes draw the same."""

    def __init__(self, config: FinetuneConfig, student: StudentExtractor, pairs: PointPairs,
                 context: RunContext) -> None:
        self.config, self.student, self.pairs = config, student, pairs
        self.rank, self.world_size = context.rank, context.world_size
        self.pairs_per_step = config.pairs_per_step
        self.steps_per_epoch = len(self._order(0)) // self.pairs_per_step
        if self.steps_per_epoch == 0:
            raise InputError(f"{len(pairs)} pairs make no step of {self.pairs_per_step} pairs on "
                             f"{self.world_size} processes")
        self._share: tuple[int, list[int]] | None = None

    def _order(self, epoch: int) -> list[int]:
        order = torch.randperm(len(self.pairs), generator=epoch_generator(self.config.seed, epoch, "refine"))
        return rank_share(order.tolist(), self.rank, self.world_size)

    def _points(self, pair: PointPair, epoch: int, index: int) -> tuple[Tensor, Tensor]:
        generator = epoch_generator(self.config.seed, epoch, f"refine-points:{index}")
        source, target = torch.from_numpy(np.asarray(pair.source_xy)), torch.from_numpy(np.asarray(pair.target_xy))
        if len(source) > self.config.points_per_pair:
            keep = torch.randperm(len(source), generator=generator)[:self.config.points_per_pair]
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
        indices = self._share[1][step * self.pairs_per_step:(step + 1) * self.pairs_per_step]
        batch = [self.pairs[i] for i in indices]
        pixels, geometries = self.student.preprocess([p.source_image for p in batch] + [p.target_image for p in batch])
        features = forward(pixels)
        points = [self._points(pair, epoch, index) for pair, index in zip(batch, indices)]
        return points_loss(features, geometries, [s for s, _ in points], [t for _, t in points], self.config.beta)


def refine_student(config: FinetuneConfig, backbone: nn.Module | None = None) -> StudentExtractor:
    """The student a run starts from: the backbone with ``config.adapter`` loaded (not merged), or
    with a new adapter."""
    return StudentExtractor(StudentConfig(input_size=config.input_size, weights=config.weights,
                                          adapter=config.adapter, merge=False, lora_rank=config.lora_rank,
                                          lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout),
                            random_weights=config.random_weights, backbone=backbone)


def finetune(config: FinetuneConfig, out: str | os.PathLike, *, backbone: nn.Module | None = None,
             on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Refine the student's LoRA adapter on known correspondences; resumes from ``out/checkpoint.pt``.

    Args:
        config: the run's settings.
        out: the run folder.
        backbone: a transformers DINOv2 model to use instead of ``config.weights`` (tests).
        on_step: called as ``on_step(global_step, loss)`` after every optimiser step, on every rank.
    Returns:
        a :class:`~semcorr.train.engine.TrainResult`; the adapter is ``out/adapter``.

    Example:
        >>> result = finetune(FinetuneConfig(pairs="co3d_pairs.h5", adapter="run/adapter"), "run3d")  # doctest: +SKIP
        >>> result.adapter                                                                          # doctest: +SKIP
        PosixPath('run3d/adapter')
    """
    pairs = open_point_pairs(config.pairs or "", config.data_root, config.split)
    return train_student(config, out, command="finetune-3d", run_format=RUN_FORMAT,
                         build_student=lambda: refine_student(config, backbone),
                         make_task=lambda student, context: RefineTask(config, student, pairs, context),
                         on_step=on_step)
