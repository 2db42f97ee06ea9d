"""Unsupervised distillation of teacher features into the LoRA student, on one or many processes.

Run folder (``RUN``)::

    RUN/config.json                 the DistillConfig (a run refuses to continue under another)
    RUN/checkpoint.pt               latest checkpoint (atomic; see :mod:`semcorr.train.checkpoint`)
    RUN/metrics.jsonl               one JSON line per logged step: epoch, step, loss, lr, pairs_per_s
    RUN/pairing/embeddings.safetensors   DINOv2 class tokens of the images (retrieval pairing)
    RUN/adapter/                    the trained adapter: `semcorr match --model student --adapter RUN/adapter`

Several processes (``torchrun``) train one student with DDP: each takes every world-size-th pair
of the epoch, gradients are all-reduced, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from ..cache.run import ImageItem, list_images, resolve_rank
from ..errors import InputError
from ..features.base import Extractor
from ..features.student import StudentConfig, StudentExtractor
from . import pairing
from ..fileio import write_atomically
from .checkpoint import check_resumable, load_checkpoint, rng_state, save_checkpoint, set_rng_state

RUN_FORMAT = "semcorr-distill-run"
OPERATIONAL = frozenset({"device", "checkpoint_every", "log_every", "progress"})  # may change on resume


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
        settings = {k: v for k, v in dataclasses.asdict(self).items() if k not in OPERATIONAL}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DistillResult:
    """What :func:`distill` returns: the adapter folder (written by rank 0), this process's
    trained student (LoRA not merged) and the number of optimiser steps taken in all."""

    adapter: Path
    student: StudentExtractor
    global_step: int


def _check_run_folder(out: Path, config: DistillConfig, rank: int) -> None:
    """Refuse a run folder made with another config; rank 0 records the config in a new one."""
    path = out / "config.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text())["config"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
            raise InputError(f"{path}: not a semcorr distill config; use another --out folder") from None
        wanted = dataclasses.asdict(config)
        changed = sorted(k for k in set(stored) | set(wanted) if k not in OPERATIONAL and stored.get(k) != wanted.get(k))
        if changed:
            first = changed[0]
            raise InputError(f"{out}: run made with another config ({', '.join(changed)}; {first}: "
                             f"{stored.get(first)!r} -> {wanted.get(first)!r}); use another --out folder")
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": RUN_FORMAT, "version": 1, "config": dataclasses.asdict(config)}, indent=2)
        write_atomically(path, (text + "\n").encode())


def _resolve_device(config: DistillConfig) -> torch.device:
    if config.device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    device = torch.device(config.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


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


def _truncate_log(path: Path, global_step: int) -> None:
    """Drop metrics lines past the checkpoint (written before a crash, to be written again)."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= global_step]
        write_atomically(path, "".join(line + "\n" for line in kept).encode())


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
    out = Path(out)
    rank, world_size = resolve_rank()
    started_group = world_size > 1 and not dist.is_initialized()
    device = _resolve_device(config)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if started_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(config, out, rank, world_size, device, backbone, teacher, on_step)
    finally:
        if started_group:
            dist.destroy_process_group()


def _train(config: DistillConfig, out: Path, rank: int, world_size: int, device: torch.device,
           backbone: nn.Module | None, teacher_extractor: Extractor | None,
           on_step: Callable[[int, float], None] | None) -> DistillResult:
    from tqdm import tqdm

    from .loop import TrainState, make_optimiser, run_epochs

    _check_run_folder(out, config, rank)
    if world_size > 1:
        dist.barrier()
    items, key_pairs = _training_images(config)
    torch.manual_seed(config.seed)  # the same LoRA init on every rank and in every run
    student = StudentExtractor(StudentConfig(input_size=config.input_size, weights=config.weights,
                                             lora_rank=config.lora_rank, lora_alpha=config.lora_alpha,
                                             lora_dropout=config.lora_dropout),
                               random_weights=config.random_weights, backbone=backbone).to(device)
    items, schedule = _schedule(config, student, items, key_pairs, out, rank, world_size, device)
    teacher = _Teacher(config, teacher_extractor, items, device)
    steps_per_epoch = len(pairing.rank_share(schedule.epoch(0), rank, world_size)) // config.pairs_per_step
    if steps_per_epoch == 0:
        raise InputError(f"{len(schedule)} pairs make no step of {config.pairs_per_step} pairs on {world_size} processes")
    optimiser, scheduler = make_optimiser(config, student.trainable_parameters(), steps_per_epoch)
    state = TrainState()
    checkpoint_path = out / "checkpoint.pt"
    if checkpoint_path.is_file():
        content = load_checkpoint(checkpoint_path)
        check_resumable(content, checkpoint_path, config.digest(), world_size)
        student.load_lora_state(content["lora"], source=str(checkpoint_path))
        optimiser.load_state_dict(content["optimizer"])
        scheduler.load_state_dict(content["scheduler"])
        set_rng_state(content["rng"][rank])
        state = TrainState(content["epoch"], content["step"], content["global_step"])
        if rank == 0:
            _truncate_log(out / "metrics.jsonl", state.global_step)
    else:
        torch.manual_seed(config.seed * 1000 + rank)  # dropout differs across ranks, as in any DDP run

    def save(state: TrainState) -> None:
        rngs = [None] * world_size
        if world_size > 1:
            dist.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        if rank == 0:
            lora = {k: v.detach().cpu().clone() for k, v in student.lora_state().items()}
            save_checkpoint(checkpoint_path, config_digest=config.digest(), world_size=world_size,
                            epoch=state.epoch, step=state.step, global_step=state.global_step, lora=lora,
                            optimizer=optimiser.state_dict(), scheduler=scheduler.state_dict(), rng=rngs)

    model: nn.Module = student.train()
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(student, device_ids=[device] if device.type == "cuda" else None)
    precision = ("bf16" if device.type == "cuda" else "fp32") if config.precision == "auto" else config.precision
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" \
        else contextlib.nullcontext
    total = config.epochs * steps_per_epoch
    with tqdm(total=total, initial=min(state.global_step, total), disable=rank != 0 or not config.progress,
              desc="distill", unit="step") as bar:
        run_epochs(config=config, state=state, schedule=schedule, items=items, student=student, model=model,
                   teacher=teacher, optimiser=optimiser, scheduler=scheduler, autocast=autocast,
                   steps_per_epoch=steps_per_epoch, rank=rank, world_size=world_size, save=save,
                   log_path=out / "metrics.jsonl", bar=bar, on_step=on_step)
    adapter = out / "adapter"
    if rank == 0:
        student.save_adapter(adapter)
    if world_size > 1:
        dist.barrier()
    return DistillResult(adapter, student.eval(), state.global_step)
