"""The distillation loop: optimiser, schedule, steps, logging and checkpoint points."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from .losses import distillation_loss
from .pairing import rank_share


@dataclass
class TrainState:
    """Where a run is: ``step`` optimiser steps done in ``epoch`` (0-based), ``global_step`` in all."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0


def make_optimiser(config, parameters: list[nn.Parameter], steps_per_epoch: int):
    """AdamW, and an lr multiplied by ``config.lr_decay`` from epoch ``config.lr_decay_epoch`` on
    (stepped once per optimiser step)."""
    optimiser = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    boundary = config.lr_decay_epoch * steps_per_epoch
    decay = config.lr_decay
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: decay if step >= boundary else 1.0)
    return optimiser, scheduler


def _mean_across_ranks(value: float, world_size: int, device: torch.device) -> float:
    if world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world_size


def run_epochs(*, config, state: TrainState, schedule, items, student, model: nn.Module, teacher, optimiser,
               scheduler, autocast: Callable, steps_per_epoch: int, rank: int, world_size: int,
               save: Callable[[TrainState], None], log_path: Path, bar: Any,
               on_step: Callable[[int, float], None] | None) -> None:
    """Train from ``state`` to the end of ``config.epochs``; ``state`` is updated in place.

    Each step: the student's features of the P source and P target images (one forward of 2P
    images), the teacher's, the loss, backward (DDP all-reduces the gradients), AdamW, scheduler.
    """
    pairs_per_step = config.pairs_per_step
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    for epoch in range(state.epoch, config.epochs):
        share = rank_share(schedule.epoch(epoch), rank, world_size)
        for step in range(state.step, steps_per_epoch):
            batch = share[step * pairs_per_step:(step + 1) * pairs_per_step]
            images = [items[a] for a, _ in batch] + [items[b] for _, b in batch]
            pixels, _ = student.preprocess([item.path for item in images])
            with autocast():
                features = model(pixels)
            features = features.float()
            grid = tuple(features.shape[-2:])
            target = teacher(images, grid)
            loss = distillation_loss(features[:pairs_per_step], features[pairs_per_step:],
                                     target[:pairs_per_step], target[pairs_per_step:], config.temperature)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            lr = optimiser.param_groups[0]["lr"]  # the lr this step used
            scheduler.step()
            state.epoch, state.step, state.global_step = epoch, step + 1, state.global_step + 1
            value = float(loss.detach())
            window_loss, window_steps = window_loss + value, window_steps + 1
            bar.update(1)
            if state.global_step % config.log_every == 0 or step + 1 == steps_per_epoch:
                seconds = time.perf_counter() - window_start
                mean = _mean_across_ranks(window_loss / window_steps, world_size, pixels.device)
                record = {"epoch": epoch, "step": state.global_step, "loss": mean,
                          "lr": lr,
                          "pairs_per_s": window_steps * pairs_per_step * world_size / max(seconds, 1e-9),
                          "time": time.time()}
                if rank == 0:
                    with open(log_path, "a") as handle:
                        handle.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{mean:.4f}", lr=f"{record['lr']:.1e}")
                window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
            if step + 1 == steps_per_epoch:
                state.epoch, state.step = epoch + 1, 0
                save(state)
            elif state.global_step % config.checkpoint_every == 0:
                save(state)
            if on_step is not None:
                on_step(state.global_step, value)
        state.step = 0
