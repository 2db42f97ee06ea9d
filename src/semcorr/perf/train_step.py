"""Cost of one training step of the full-size student (random weights: cost does not depend on them).

    semcorr bench-train --runs 5 --precision fp32 bf16

One step is what :func:`semcorr.train.distill` does per pair: the student's forward of the source
and target images (2 x 3 x 434 x 434), the distillation loss against teacher features
(2 x 2048 x 31 x 31, as a teacher cache would give them), backward through the LoRA layers, and
one AdamW step. Image decoding and reading the cache are not included. ``warmup`` steps first,
then ``runs`` timed steps; the table gives the median and the fastest.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InputError
from ..features.config import StudentConfig
from ..features.distill.student import StudentExtractor
from ..runtime import machine_info
from ..train.losses import distillation_loss


def time_steps(
    precision: str, *, input_size: int = 434, pairs: int = 1, runs: int = 5, warmup: int = 1, device: str = "cpu"
) -> dict[str, Any]:
    """Seconds per optimiser step of a random-weight student; returns a table row."""
    torch.manual_seed(0)
    student = StudentExtractor(StudentConfig(input_size=input_size), random_weights=True).to(device).train()
    optimiser = torch.optim.AdamW(student.trainable_parameters(), lr=1e-4, weight_decay=0.05)
    pixels = torch.rand(2 * pairs, 3, input_size, input_size, device=device)
    grid = input_size // 14
    teacher = torch.randn(2 * pairs, 2048, grid, grid, device=device)
    autocast = (
        (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16))
        if precision == "bf16"
        else contextlib.nullcontext
    )
    seconds = []
    for index in range(warmup + runs):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast():
            features = student(pixels)
        loss = distillation_loss(features[:pairs].float(), features[pairs:].float(), teacher[:pairs], teacher[pairs:])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if index >= warmup:
            seconds.append(time.perf_counter() - start)
    return {
        "precision": precision,
        "input_size": input_size,
        "pairs_per_step": pairs,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "runs": runs,
    }


def run_train_step_bench(
    *,
    precisions: Sequence[str] = ("fp32", "bf16"),
    input_size: int = 434,
    pairs: int = 1,
    runs: int = 5,
    warmup: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """:func:`time_steps` for each precision: ``{"machine": {...}, "rows": [...]}``."""
    if runs < 1 or warmup < 0 or pairs < 1:
        raise InputError(f"need --runs >= 1, --warmup >= 0 and --pairs >= 1; got {runs}, {warmup} and {pairs}")
    StudentConfig(input_size=input_size)  # checks the size before anything is built
    rows = [
        time_steps(p, input_size=input_size, pairs=pairs, runs=runs, warmup=warmup, device=device) for p in precisions
    ]
    return {"machine": machine_info(torch.device(device)), "rows": rows}


def format_train_step_table(result: dict[str, Any]) -> str:
    """The rows of :func:`run_train_step_bench` as a markdown table under a line naming the machine."""
    machine = result["machine"]
    lines = [
        f"student training step, random weights ({machine.get('gpu') or machine.get('cpu')}, "
        f"{machine['threads']} threads, load {machine.get('load_average')})",
        "| precision | input | pairs/step | median s/step | fastest |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {row['precision']} | {row['input_size']} | {row['pairs_per_step']} | {row['median_s']:.2f} | "
        f"{row['min_s']:.2f} |"
        for row in result["rows"]
    ]
    return "\n".join(lines)
