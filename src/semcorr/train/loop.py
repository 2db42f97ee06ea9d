"""The training loop every run shares: optimiser, schedule, steps, logging and checkpoint points.

What a step computes is the task's (see :class:`semcorr.train.engine.Task`); this module only
runs the steps in order from wherever a run stands.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import TrainingError
from ..fileio import cannot_write


@dataclass
class TrainState:
    """Where a run is: ``step`` optimiser steps done in ``epoch`` (0-based), ``global_step`` in all."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0


def make_optimiser(
    config: Any, parameters: list[nn.Parameter], steps_per_epoch: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW, and an lr multiplied by ``config.lr_decay`` from epoch ``config.lr_decay_epoch`` on
    (stepped once per optimiser step)."""
    optimiser = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    boundary = config.lr_decay_epoch * steps_per_epoch
    decay = config.lr_decay
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: decay if step >= boundary else 1.0)
    return optimiser, scheduler


def _finite_everywhere(finite: bool, world_size: int, device: torch.device) -> bool:
    """Whether ``finite`` holds on every rank (each rank must stop at the same step)."""
    if world_size == 1:
        return finite
    flag = torch.tensor([0.0 if finite else 1.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag.item() == 0.0


def _diverged(config: Any, what: str, epoch: int, step: int, saved_step: int, log_path: Path) -> TrainingError:
    kept = (
        f"the last good checkpoint (step {saved_step}) is kept in {log_path.parent / 'checkpoint.pt'}"
        if saved_step
        else "no checkpoint had been written yet"
    )
    return TrainingError(
        f"{getattr(config, 'COMMAND', 'training')}: {what} at step {step} (epoch {epoch}); stopped "
        f"without writing an adapter; {kept}. Lower --lr, or check the data for broken values"
    )


def _append_line(path: Path, line: str) -> None:
    try:
        with open(path, "a") as handle:
            handle.write(line + "\n")
    except OSError as error:
        raise cannot_write(path, error) from None


def _mean_across_ranks(value: float, world_size: int, device: torch.device) -> float:
    if world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world_size


def run_epochs(
    *,
    config: Any,
    state: TrainState,
    task: Any,
    forward: Callable[[Tensor], Tensor],
    optimiser: torch.optim.Optimizer,
    scheduler: Any,
    rank: int,
    world_size: int,
    device: torch.device,
    save: Callable[[TrainState], None],
    log_path: Path,
    bar: Any,
    on_step: Callable[[int, float], None] | None,
) -> None:
    """Train from ``state`` to the end of ``config.epochs``; ``state`` is updated in place.

    Each step: the task's loss (its forward passes go through ``forward``: DDP all-reduces the
    gradients in backward), AdamW, scheduler; a metrics line every ``config.log_every`` steps and
    at each epoch's end; a checkpoint every ``config.checkpoint_every`` steps and at each epoch's end.

    Raises:
        TrainingError: the loss, or a weight after a step, is not a finite number: the run stops
            there (on every rank), before that step's weights reach a checkpoint.
    """
    steps_per_epoch, pairs_per_step = task.steps_per_epoch, task.pairs_per_step
    parameters = [p for group in optimiser.param_groups for p in group["params"]]
    saved_step = state.global_step  # a resumed run starts from a good checkpoint
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    for epoch in range(state.epoch, config.epochs):
        for step in range(state.step, steps_per_epoch):
            loss = task.loss(forward, epoch, step)
            if not _finite_everywhere(bool(torch.isfinite(loss.detach())), world_size, device):
                raise _diverged(
                    config,
                    f"the loss is not finite ({float(loss.detach())})",
                    epoch,
                    state.global_step + 1,
                    saved_step,
                    log_path,
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            weights_finite = all(bool(torch.isfinite(p).all()) for p in parameters)
            if not _finite_everywhere(weights_finite, world_size, device):
                raise _diverged(
                    config,
                    "the weights are no longer finite after the optimiser step",
                    epoch,
                    state.global_step + 1,
                    saved_step,
                    log_path,
                )
            lr = optimiser.param_groups[0]["lr"]  # the lr this step used
            scheduler.step()
            state.epoch, state.step, state.global_step = epoch, step + 1, state.global_step + 1
            value = float(loss.detach())
            window_loss, window_steps = window_loss + value, window_steps + 1
            bar.update(1)
            if state.global_step % config.log_every == 0 or step + 1 == steps_per_epoch:
                seconds = time.perf_counter() - window_start
                mean = _mean_across_ranks(window_loss / window_steps, world_size, device)
                record = {
                    "epoch": epoch,
                    "step": state.global_step,
                    "loss": mean,
                    "lr": lr,
                    "pairs_per_s": window_steps * pairs_per_step * world_size / max(seconds, 1e-9),
                    "time": time.time(),
                }
                if rank == 0:
                    _append_line(log_path, json.dumps(record))
                bar.set_postfix(loss=f"{mean:.4f}", lr=f"{record['lr']:.1e}")
                window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
            if step + 1 == steps_per_epoch:
                state.epoch, state.step = epoch + 1, 0
                save(state)
                saved_step = state.global_step
            elif state.global_step % config.checkpoint_every == 0:
                save(state)
                saved_step = state.global_step
            if on_step is not None:
                on_step(state.global_step, value)
        state.step = 0
