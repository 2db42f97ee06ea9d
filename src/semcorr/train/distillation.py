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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..features.base import Extractor
from ..features.distill.student import StudentExtractor
from ..features.registry import build_extractor
from ..fileio import check_output_folder
from ..images import ImageItem, list_images
from ..runtime import resolve_rank
from ..store.folder import FeatureFolder
from . import pairing
from .config import DistillConfig
from .engine import RunContext, TrainResult, train_student
from .losses import distillation_loss

if TYPE_CHECKING:
    from ..features.backbones.dinov2 import DinoBackbone


DistillResult = TrainResult  # what :func:`distill` returns: adapter folder, trained student, steps taken


KeyPairs = tuple[tuple[str, str], ...]


def _training_images(config: DistillConfig) -> tuple[list[ImageItem], KeyPairs]:
    """The images and, for listed pairs, the key pairs (retrieval pairs need embeddings first)."""
    if config.benchmark:
        images, key_pairs = pairing.benchmark_pairs(
            config.benchmark, config.data_root or "", config.split, images=config.images
        )
        return list_images(images), tuple(key_pairs)
    items = list_images(config.images or "")
    if not config.pair_list:
        return items, ()
    keys = {item.key for item in items}
    return items, tuple(pairing.read_pair_list(config.pair_list, keys, where=f"--images {config.images}"))


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


def _schedule(
    config: DistillConfig,
    student: StudentExtractor,
    items: list[ImageItem],
    key_pairs: KeyPairs,
    out: Path,
    rank: int,
    world_size: int,
    device: torch.device,
) -> tuple[list[ImageItem], pairing.RetrievalPairs | pairing.ListedPairs]:
    """The images that take part and the pairing: listed pairs, or retrieval over class tokens."""
    if key_pairs:
        kept, index = pairing.index_pairs(items, key_pairs, config.pair_list or config.benchmark or "pairs")
        return kept, pairing.ListedPairs(index, config.seed)
    identity = {
        "keys": pairing.keys_digest(items),
        "weights": config.weights,
        "random": config.random_weights,
        "input_size": config.input_size,
        "backbone": repr(student.model.config.to_dict()),
    }
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


SHOWN_KEYS = 20  # skipped images named on stderr; the count covers the rest


def held_by_cache(
    config: DistillConfig, items: list[ImageItem], key_pairs: KeyPairs
) -> tuple[list[ImageItem], KeyPairs]:
    """The images (and listed pairs) the teacher cache holds whole entries of. Any other image stops
    the run (``on_missing="stop"``), or is left out and named on stderr (``"skip"``)."""
    assert config.teacher_cache is not None  # called when the run has a teacher cache
    missing = set(FeatureFolder(config.teacher_cache).missing([item.key for item in items]))
    if not missing:
        return items, key_pairs
    first = next(item.key for item in items if item.key in missing)
    if config.on_missing == "stop":
        raise InputError(
            f"{config.teacher_cache}: no teacher features for {len(missing)} of {len(items)} images, "
            f"e.g. {first!r}; fill it with `semcorr cache-teacher`, or pass --on-missing skip to train "
            "without them"
        )
    kept = [item for item in items if item.key not in missing]
    pairs = tuple(pair for pair in key_pairs if pair[0] not in missing and pair[1] not in missing)
    if resolve_rank()[0] == 0:
        named = sorted(missing)
        more = f" and {len(named) - SHOWN_KEYS} more" if len(named) > SHOWN_KEYS else ""
        dropped = f" (and {len(key_pairs) - len(pairs)} listed pairs with them)" if key_pairs else ""
        print(
            f"semcorr: distill: skipping {len(missing)} of {len(items)} images the teacher cache "
            f"{config.teacher_cache} does not hold{dropped}: {', '.join(map(repr, named[:SHOWN_KEYS]))}{more}",
            file=sys.stderr,
        )
    return kept, pairs


class _Teacher:
    """Teacher features of a batch of images: from a cache, or from a live extractor."""

    def __init__(
        self, config: DistillConfig, extractor: Extractor | None, items: list[ImageItem], device: torch.device
    ) -> None:
        self.device, self.cache, self.extractor = device, None, extractor
        if extractor is None and config.teacher_cache:
            self.cache = FeatureFolder(config.teacher_cache)  # holds every image (see held_by_cache)
        elif extractor is None and config.teacher:
            self.extractor = build_extractor(
                config.teacher, weights=config.teacher_weights, random_weights=config.random_weights, device=device
            )
        elif extractor is None:
            raise InputError("distill needs a teacher: --teacher-cache DIR or --teacher PRESET")

    def __call__(self, items: list[ImageItem], grid: tuple[int, int]) -> Tensor:
        """(B, C, h, w) float32 features on the device, resized to ``grid`` if needed."""
        if self.cache is not None:
            features = torch.stack([self.cache.get(item.key, dtype=torch.float32) for item in items]).to(self.device)
        else:
            assert self.extractor is not None  # __init__ refuses a teacher with neither
            features = self.extractor.extract([item.path for item in items]).features.to(self.device)
        if tuple(features.shape[-2:]) != tuple(grid):
            features = F.interpolate(features, size=grid, mode="bilinear", align_corners=False)
        return features


class DistillTask:
    """A distillation step: the student's features of P source and P target images (one forward
    of 2P images) against the teacher's, by :func:`~semcorr.train.losses.distillation_loss`."""

    def __init__(
        self,
        config: DistillConfig,
        student: StudentExtractor,
        images: list[ImageItem],
        key_pairs: KeyPairs,
        context: RunContext,
        teacher: Extractor | None,
    ) -> None:
        rank, world_size = context.rank, context.world_size
        self.config, self.student, self.rank, self.world_size = config, student, rank, world_size
        self.items, self.schedule = _schedule(
            config, student, images, key_pairs, context.out, rank, world_size, context.device
        )
        self.teacher = _Teacher(config, teacher, self.items, context.device)
        self.pairs_per_step = config.pairs_per_step
        self.steps_per_epoch = len(pairing.rank_share(self.schedule.epoch(0), rank, world_size)) // self.pairs_per_step
        if self.steps_per_epoch == 0:
            raise InputError(
                f"{len(self.schedule)} pairs make no step of {self.pairs_per_step} pairs on {world_size} processes"
            )
        self._share: tuple[int, list[tuple[int, int]]] | None = None

    def loss(self, forward: Callable[[Tensor], Tensor], epoch: int, step: int) -> Tensor:
        if self._share is None or self._share[0] != epoch:
            self._share = (epoch, pairing.rank_share(self.schedule.epoch(epoch), self.rank, self.world_size))
        count = self.pairs_per_step
        batch = self._share[1][step * count : (step + 1) * count]
        images = [self.items[a] for a, _ in batch] + [self.items[b] for _, b in batch]
        pixels, _ = self.student.preprocess([item.path for item in images])
        assert isinstance(pixels, Tensor)  # the student's canvases: one batch, not the teacher's dict
        features = forward(pixels)
        target = self.teacher(images, (features.shape[-2], features.shape[-1]))
        return distillation_loss(
            features[:count], features[count:], target[:count], target[count:], self.config.temperature
        )


def distill(
    config: DistillConfig,
    out: str | os.PathLike,
    *,
    backbone: DinoBackbone | None = None,
    teacher: Extractor | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> DistillResult:
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
    check_output_folder(out, what="run folder")  # before any work (train_student checks again, for every run)
    images, key_pairs = _training_images(config)
    if teacher is None and config.teacher_cache:
        images, key_pairs = held_by_cache(config, images, key_pairs)

    def build_student() -> StudentExtractor:
        return StudentExtractor(config.student_config(), random_weights=config.random_weights, backbone=backbone)

    def make_task(student: StudentExtractor, context: RunContext) -> DistillTask:
        return DistillTask(config, student, images, key_pairs, context, teacher)

    return train_student(config, out, build_student=build_student, make_task=make_task, on_step=on_step)
