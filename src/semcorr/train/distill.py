"""Unsupervised distillation of teacher features into the LoRA student, on one or many processes.

Run folder (``RUN``; the run itself is :mod:`semcorr.train.engine`'s)::

    RUN/config.json                 the DistillConfig (a run refuses to continue under another)
    RUN/checkpoint.pt               latest checkpoint (atomic; see :mod:`semcorr.train.checkpoint`)
    RUN/metrics.jsonl               one JSON line per logged step: epoch, step, loss, lr, pairs_per_s
    RUN/pairing/embeddings.safetensors   DINOv2 class tokens of the images (retrieval pairing)
    RUN/adapter/                    the trained adapter: `semcorr match --model student --adapter RUN/adapter`

Several processes (``torchrun``) train one student with DDP: each takes every world-size-th pair
of the epoch, gradients are all-reduced, and only rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..cache.run import ImageItem, list_images
from ..errors import InputError
from ..features.base import Extractor
from ..features.student import StudentConfig, StudentExtractor
from . import pairing
from .engine import RunContext, TrainResult, config_digest, train_student
from .losses import distillation_loss

RUN_FORMAT = "semcorr-distill-run"


@dataclass(frozen=True)
class DistillConfig:
    """Every setting of a distillation run (saved as ``RUN/config.json``).

    Attributes:
        images: folder of training images (recursive) or a text file listing them.
        pairs: ``None``: retrieval pairing; a text file of ``source target`` key pairs; or a
            SPair-71k root (its ``trn`` pairs, images only; ``images`` defaults to its JPEGImages).
        teacher_cache: folder filled by ``semcorr cache-teacher`` over the same images.
        teacher: instead of a cache, a teacher preset run live (e.g. ``teacher``).
        teacher_weights: weights of the live teacher preset.
        weights: the student backbone's weights (HF id, folder or .pth; default the official one).
        random_weights: untrained student backbone (timing, tests).
        input_size: student input side in pixels (434 -> 31x31 patches).
        epochs: passes over the pairs.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_decay_epoch: multiply the lr by ``lr_decay`` from this epoch on (0-based).
        lr_decay: the factor.
        temperature: softmax temperature of the loss.
        lora_rank, lora_alpha, lora_dropout: the adapter.
        neighbours: k of the retrieval pairing.
        pairs_per_step: pairs per optimiser step per process.
        seed: fixes the LoRA init, the pairs of every epoch and the dropout.
        precision: ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``fp32`` or ``bf16``.
        device: ``auto``, ``cpu``, ``cuda`` (each process takes ``cuda:LOCAL_RANK``).
        checkpoint_every: steps between checkpoints (also at every epoch's end).
        log_every: steps between metrics lines.
        progress: show a progress bar (rank 0).
    """

    images: str | None = None
    pairs: str | None = None
    teacher_cache: str | None = None
    teacher: str | None = None
    teacher_weights: str | None = None
    weights: str | None = None
    random_weights: bool = False
    input_size: int = 434
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 0.05
    lr_decay_epoch: int = 5
    lr_decay: float = 0.1
    temperature: float = 0.01
    lora_rank: int = 8
    lora_alpha: float = 8.0
    lora_dropout: float = 0.05
    neighbours: int = 10
    pairs_per_step: int = 1
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = "auto"
    checkpoint_every: int = 200
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "lr": self.lr, "temperature": self.temperature,
                    "pairs_per_step": self.pairs_per_step, "neighbours": self.neighbours,
                    "checkpoint_every": self.checkpoint_every, "log_every": self.log_every}
        for name, value in positive.items():
            if not value > 0:
                raise InputError(f"distill: --{name.replace('_', '-')} must be positive, got {value}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"distill: --precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.teacher_cache and self.teacher:
            raise InputError("distill: give --teacher-cache or --teacher, not both")

    def digest(self) -> str:
        """Hash of the settings that change the result (operational ones excluded)."""
        return config_digest(self)


DistillResult = TrainResult  # what :func:`distill` returns: adapter folder, trained student, steps taken


KeyPairs = tuple[tuple[str, str], ...]


def _training_images(config: DistillConfig) -> tuple[list[ImageItem], KeyPairs]:
    """The images and, for listed pairs, the key pairs (retrieval pairs need embeddings first)."""
    if config.pairs and Path(config.pairs).is_dir():
        images, key_pairs = pairing.spair_training_pairs(config.pairs)
        return list_images(config.images or images), tuple(key_pairs)
    if not config.images:
        raise InputError("distill needs --images (a folder or list file), or --pairs with a SPair-71k root")
    items = list_images(config.images)
    return items, (tuple(pairing.read_pair_list(config.pairs)) if config.pairs else ())


def _gather_rows(local: Tensor, total: int, rank: int, world_size: int, device: torch.device) -> Tensor:
    """Reassemble rows computed as ``items[rank::world_size]`` on every rank into (total, C)."""
    if world_size == 1:
        return local
    size = -(-total // world_size)
    padded = torch.zeros(size, local.shape[1], device=device)
    padded[: len(local)] = local.to(device)
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    result = torch.empty(total, local.shape[1])
    for r, rows in enumerate(gathered):
        count = len(range(r, total, world_size))
        result[r::world_size] = rows[:count].cpu()
    return result


def _schedule(config: DistillConfig, student: StudentExtractor, items: list[ImageItem], key_pairs: KeyPairs,
              out: Path, rank: int, world_size: int,
              device: torch.device) -> tuple[list[ImageItem], pairing.RetrievalPairs | pairing.ListedPairs]:
    """The images that take part and the pairing: listed pairs, or retrieval over class tokens."""
    if key_pairs:
        kept, index = pairing.index_pairs(items, key_pairs, config.pairs or "pairs")
        return kept, pairing.ListedPairs(index, config.seed)
    identity = {"keys": pairing.keys_digest(items), "weights": config.weights, "random": config.random_weights,
                "input_size": config.input_size, "backbone": repr(student.model.config.to_dict())}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    path = out / "pairing" / "embeddings.safetensors"
    embeddings = pairing.load_embeddings(path, digest)
    if embeddings is None:
        local = pairing.class_embeddings(student, items, rank=rank, world_size=world_size)
        embeddings = _gather_rows(local, len(items), rank, world_size, device)
        if rank == 0:
            pairing.save_embeddings(path, embeddings, digest)
    neighbours = pairing.nearest_neighbours(embeddings, min(config.neighbours, len(items) - 1))
    if world_size > 1:  # every rank uses rank 0's answer, even if float ties broke differently
        shared = neighbours.to(device)
        dist.broadcast(shared, 0)
        neighbours = shared.cpu()
    return items, pairing.RetrievalPairs(neighbours, config.seed)


class _Teacher:
    """Teacher features of a batch of images: from a cache, or from a live extractor."""

    def __init__(self, config: DistillConfig, extractor: Extractor | None, items: list[ImageItem],
                 device: torch.device) -> None:
        from ..cache.store import TeacherCache

        self.device, self.cache, self.extractor = device, None, extractor
        if extractor is None and config.teacher_cache:
            self.cache = TeacherCache(config.teacher_cache)
            missing = [item.key for item in items if item.key not in self.cache]
            if missing:
                raise InputError(f"{config.teacher_cache}: no teacher features for {len(missing)} of {len(items)} "
                                 f"images, e.g. {missing[0]!r}; fill it with `semcorr cache-teacher`")
        elif extractor is None and config.teacher:
            from ..features import build_extractor

            self.extractor = build_extractor(config.teacher, weights=config.teacher_weights,
                                             random_weights=config.random_weights, device=device)
        elif extractor is None:
            raise InputError("distill needs a teacher: --teacher-cache DIR or --teacher PRESET")

    def __call__(self, items: list[ImageItem], grid: tuple[int, int]) -> Tensor:
        """(B, C, h, w) float32 features on the device, resized to ``grid`` if needed."""
        if self.cache is not None:
            features = torch.stack([self.cache.get(item.key, dtype=torch.float32) for item in items]).to(self.device)
        else:
            features = self.extractor.extract([item.path for item in items]).features.to(self.device)
        if tuple(features.shape[-2:]) != tuple(grid):
            features = F.interpolate(features, size=grid, mode="bilinear", align_corners=False)
        return features


class DistillTask:
    """A distillation step: the student's features of P source and P target images (one forward
    of 2P images) against the teacher's, by :func:`~semcorr.train.losses.distillation_loss`."""

    def __init__(self, config: DistillConfig, student: StudentExtractor, images: list[ImageItem],
                 key_pairs: KeyPairs, context: RunContext, teacher: Extractor | None) -> None:
        rank, world_size = context.rank, context.world_size
        self.config, self.student, self.rank, self.world_size = config, student, rank, world_size
        self.items, self.schedule = _schedule(config, student, images, key_pairs, context.out, rank, world_size,
                                              context.device)
        self.teacher = _Teacher(config, teacher, self.items, context.device)
        self.pairs_per_step = config.pairs_per_step
        self.steps_per_epoch = len(pairing.rank_share(self.schedule.epoch(0), rank, world_size)) // self.pairs_per_step
        if self.steps_per_epoch == 0:
            raise InputError(f"{len(self.schedule)} pairs make no step of {self.pairs_per_step} pairs on "
                             f"{world_size} processes")
        self._share: tuple[int, list[tuple[int, int]]] | None = None

    def loss(self, forward: Callable[[Tensor], Tensor], epoch: int, step: int) -> Tensor:
        if self._share is None or self._share[0] != epoch:
            self._share = (epoch, pairing.rank_share(self.schedule.epoch(epoch), self.rank, self.world_size))
        count = self.pairs_per_step
        batch = self._share[1][step * count:(step + 1) * count]
        images = [self.items[a] for a, _ in batch] + [self.items[b] for _, b in batch]
        pixels, _ = self.student.preprocess([item.path for item in images])
        features = forward(pixels)
        target = self.teacher(images, tuple(features.shape[-2:]))
        return distillation_loss(features[:count], features[count:], target[:count], target[count:],
                                 self.config.temperature)


def distill(config: DistillConfig, out: str | os.PathLike, *, backbone: nn.Module | None = None,
            teacher: Extractor | None = None,
            on_step: Callable[[int, float], None] | None = None) -> DistillResult:
    """Train the student's LoRA adapter; resumes from ``out/checkpoint.pt`` when present.

    Args:
        config: the run's settings.
        out: the run folder.
        backbone: a transformers DINOv2 model to use instead of ``config.weights`` (tests).
        teacher: a live teacher extractor instead of ``config.teacher_cache`` / ``config.teacher``.
        on_step: called as ``on_step(global_step, loss)`` after every optimiser step, on every rank.
    Returns:
        a :class:`DistillResult`; the adapter is ``out/adapter``.
    """
    images, key_pairs = _training_images(config)

    def build_student() -> StudentExtractor:
        return StudentExtractor(StudentConfig(input_size=config.input_size, weights=config.weights,
                                              lora_rank=config.lora_rank, lora_alpha=config.lora_alpha,
                                              lora_dropout=config.lora_dropout),
                                random_weights=config.random_weights, backbone=backbone)

    def make_task(student: StudentExtractor, context: RunContext) -> DistillTask:
        return DistillTask(config, student, images, key_pairs, context, teacher)

    return train_student(config, out, command="distill", run_format=RUN_FORMAT, build_student=build_student,
                         make_task=make_task, on_step=on_step)
