"""The training engine every student run shares (``semcorr distill``, ``semcorr finetune-3d``).

A run is a config (a :class:`~semcorr.train.config.TrainConfig`), a run folder, a LoRA student
and a :class:`Task`: the data and the loss of one step. The engine does the rest, once for every
kind of run::

    RUN/config.json      {"format": <the run's format>, "version": 2, "config": {...}}; a rerun
                         with other settings (operational ones aside) is refused
    RUN/checkpoint.pt    LoRA weights, optimiser, scheduler, every rank's RNG states, place in the epoch
    RUN/metrics.jsonl    one JSON line per logged step: epoch, step, loss, lr, pairs_per_s, time
    RUN/adapter/         the trained adapter: `semcorr match --model student --adapter RUN/adapter`

It picks the device, starts the process group under ``torchrun`` (NCCL on GPU, gloo on CPU),
wraps the student in DDP, resumes exactly from ``RUN/checkpoint.pt`` (same weights, RNG states
and place in the epoch as an uninterrupted run), autocasts to bf16 when asked, shows a progress
bar, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from .._moved import renamed_names
from ..errors import InputError
from ..features.distill.student import StudentExtractor
from ..fileio import check_output_folder, make_folder, read_json, write_atomically, write_json
from ..runtime import resolve_device, resolve_rank
from .checkpoint import check_resumable, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import CONFIG_VERSION, OPERATIONAL, TrainConfig, record_digest
from .loop import TrainState, make_optimiser, run_epochs


class Task(Protocol):
    """One kind of training: its data and its loss.

    Attributes:
        steps_per_epoch: optimiser steps per epoch on every rank (the same on all ranks).
        pairs_per_step: pairs per step on one rank (for the ``pairs_per_s`` metric).
    """

    steps_per_epoch: int
    pairs_per_step: int

    def loss(self, forward: Callable[[Tensor], Tensor], epoch: int, step: int) -> Tensor:
        """This rank's scalar loss of ``step`` (0-based) of ``epoch``. ``forward`` maps (B, 3, S, S)
        input canvases in [0, 1] to (B, C, h, w) float32 student features, with gradients (through
        DDP and autocast as the run needs). Randomness must come from the global RNGs or from
        generators seeded by (seed, epoch, ...), so that a resumed run repeats it exactly."""
        ...


@dataclass(frozen=True)
class RunContext:
    """Where a task runs: the run folder, this process's rank among ``world_size``, its device."""

    out: Path
    rank: int
    world_size: int
    device: torch.device


@dataclass(frozen=True)
class TrainResult:
    """What a training run returns: the adapter folder (written by rank 0), this process's trained
    student (LoRA not merged, in eval mode) and the number of optimiser steps taken in all."""

    adapter: Path
    student: StudentExtractor
    global_step: int


def check_run_folder(out: Path, config: TrainConfig, rank: int) -> str:
    """Refuse a run folder made with another config or by another command; rank 0 records the
    config in a new one. Returns the digest the folder's checkpoint must carry (that of the config
    as the folder records it: a folder of the first config version keeps its own)."""
    path = out / "config.json"
    if not path.is_file():
        if rank == 0:
            make_folder(out)
            write_json(path, {"format": config.RUN_FORMAT, "version": CONFIG_VERSION, "config": config.record()})
        return config.digest()
    try:
        content = read_json(path, expect=dict)
    except InputError:
        content = {}
    stored, version = content.get("config"), content.get("version", 1)
    if not isinstance(stored, dict) or version not in (1, CONFIG_VERSION):
        raise InputError(f"{path}: not a semcorr {config.COMMAND} config; use another --out folder")
    if content.get("format", config.RUN_FORMAT) != config.RUN_FORMAT:
        raise InputError(
            f"{out}: a {content.get('format')} folder, not a {config.RUN_FORMAT} one; use another --out folder"
        )
    previous = type(config).from_record(stored, version, path).record()
    wanted = config.record()
    changed = sorted(
        k for k in set(previous) | set(wanted) if k not in OPERATIONAL and previous.get(k) != wanted.get(k)
    )
    if changed:
        first = changed[0]
        raise InputError(
            f"{out}: run made with another config ({', '.join(changed)}; {first}: "
            f"{previous.get(first)!r} -> {wanted.get(first)!r}); use another --out folder"
        )
    return record_digest(stored)


def truncate_log(path: Path, global_step: int) -> None:
    """Drop metrics lines past the checkpoint (written before a crash, to be written again), and a
    last line a crash cut in half (with a warning); another unreadable line is an InputError."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            if number == len(lines):
                warnings.warn(f"{path}: dropped its last line, cut off by a crash: {line[:60]!r}", stacklevel=2)
                break
            raise InputError(
                f"{path}: line {number} is not a metrics record ({line[:60]!r}); repair or delete the line to resume"
            ) from None
        if step <= global_step:
            kept.append(line)
    write_atomically(path, "".join(line + "\n" for line in kept))


def train_student(
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    build_student: Callable[[], StudentExtractor],
    make_task: Callable[[StudentExtractor, RunContext], Task],
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a student's LoRA adapter on ``make_task``'s loss; resumes from ``out/checkpoint.pt``.

    Args:
        config: the run's settings (saved as ``out/config.json`` with ``config.RUN_FORMAT``; a folder
            of another format is refused).
        out: the run folder.
        build_student: builds the student on the CPU; called with the torch seed set to
            ``config.seed``, so the LoRA initialisation is the same on every rank and in every run.
        make_task: the task, given the student (on its device) and the :class:`RunContext`.
        on_step: called as ``on_step(global_step, loss)`` after every optimiser step, on every rank.
    Returns:
        a :class:`TrainResult`; the adapter is ``out/adapter``.
    """
    out = check_output_folder(out, what="run folder")
    rank, world_size = resolve_rank()
    started_group = world_size > 1 and not dist.is_initialized()
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if started_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        context = RunContext(out, rank, world_size, device)
        return _train(config, context, build_student, make_task, on_step)
    finally:
        if started_group:
            dist.destroy_process_group()


def _train(
    config: TrainConfig,
    context: RunContext,
    build_student: Callable[[], StudentExtractor],
    make_task: Callable[[StudentExtractor, RunContext], Task],
    on_step: Callable[[int, float], None] | None,
) -> TrainResult:
    out, rank, world_size, device = context.out, context.rank, context.world_size, context.device
    digest = check_run_folder(out, config, rank)
    if world_size > 1:
        dist.barrier()
    torch.manual_seed(config.seed)  # the same LoRA init on every rank and in every run
    student = build_student().to(device)
    task = make_task(student, context)
    optimiser, scheduler = make_optimiser(config, student.trainable_parameters(), task.steps_per_epoch)
    state = TrainState()
    checkpoint_path = out / "checkpoint.pt"
    if not checkpoint_path.is_file() and (out / "adapter").exists():
        raise InputError(
            f"{out}: the run finished (it holds adapter/) but its checkpoint.pt is gone, so it cannot be "
            "resumed or redone in place; use another --out folder"
        )
    if checkpoint_path.is_file():
        content = load_checkpoint(checkpoint_path)
        check_resumable(content, checkpoint_path, digest, world_size)
        student.load_lora_state(content["lora"], source=str(checkpoint_path))
        optimiser.load_state_dict(content["optimizer"])
        scheduler.load_state_dict(content["scheduler"])
        set_rng_state(content["rng"][rank])
        state = TrainState(content["epoch"], content["step"], content["global_step"])
        if rank == 0:
            truncate_log(out / "metrics.jsonl", state.global_step)
    else:
        torch.manual_seed(config.seed * 1000 + rank)  # dropout differs across ranks, as in any DDP run
        if rank == 0:
            truncate_log(out / "metrics.jsonl", 0)  # lines of a run killed before its first checkpoint

    def save(state: TrainState) -> None:
        rngs: list[Any] = [None] * world_size
        if world_size > 1:
            dist.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        if rank == 0:
            lora = {k: v.detach().cpu().clone() for k, v in student.lora_state().items()}
            save_checkpoint(
                checkpoint_path,
                config_digest=digest,
                world_size=world_size,
                epoch=state.epoch,
                step=state.step,
                global_step=state.global_step,
                lora=lora,
                optimizer=optimiser.state_dict(),
                scheduler=scheduler.state_dict(),
                rng=rngs,
            )

    model: nn.Module = student.train()
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(student, device_ids=[device] if device.type == "cuda" else None)
    precision = ("bf16" if device.type == "cuda" else "fp32") if config.precision == "auto" else config.precision
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    )

    def forward(pixels: Tensor) -> Tensor:
        with autocast():
            features = model(pixels)
        return features.float()

    total = config.epochs * task.steps_per_epoch
    with tqdm(
        total=total,
        initial=min(state.global_step, total),
        disable=rank != 0 or not config.progress,
        desc=config.COMMAND,
        unit="step",
    ) as bar:
        run_epochs(
            config=config,
            state=state,
            task=task,
            forward=forward,
            optimiser=optimiser,
            scheduler=scheduler,
            rank=rank,
            world_size=world_size,
            device=device,
            save=save,
            log_path=out / "metrics.jsonl",
            bar=bar,
            on_step=on_step,
        )
    adapter = out / "adapter"
    if rank == 0:
        student.save_adapter(adapter)
    if world_size > 1:
        dist.barrier()
    return TrainResult(adapter, student.eval(), state.global_step)


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
