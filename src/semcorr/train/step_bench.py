"""Cost of one training step of the full-size student (random weights: cost does not depend on them).

    python -m semcorr.train.step_bench --runs 5 --precisions fp32 bf16

One step is what :func:`semcorr.train.distill` does per pair: the student's forward of the source
and target images (2 x 3 x 434 x 434), the distillation loss against teacher features
(2 x 2048 x 31 x 31, as a teacher cache would give them), backward through the LoRA layers, and
one AdamW step. Image decoding and reading the cache are not included. ``warmup`` steps first,
then ``runs`` timed steps; the table gives the median and the fastest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from typing import Any

import torch

from ..bench import machine_info
from ..features.student import StudentConfig, StudentExtractor
from .losses import distillation_loss


def time_steps(precision: str, *, input_size: int = 434, pairs: int = 1, runs: int = 5, warmup: int = 1,
               device: str = "cpu") -> dict[str, Any]:
    """Seconds per optimiser step of a random-weight student; returns a table row."""
    torch.manual_seed(0)
    student = StudentExtractor(StudentConfig(input_size=input_size), random_weights=True).to(device).train()
    optimiser = torch.optim.AdamW(student.trainable_parameters(), lr=1e-4, weight_decay=0.05)
    pixels = torch.rand(2 * pairs, 3, input_size, input_size, device=device)
    grid = input_size // 14
    teacher = torch.randn(2 * pairs, 2048, grid, grid, device=device)
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) if precision == "bf16" \
        else contextlib.nullcontext
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
    return {"precision": precision, "input_size": input_size, "pairs_per_step": pairs,
            "median_s": statistics.median(seconds), "min_s": min(seconds), "runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--input-size", type=int, default=434)
    parser.add_argument("--pairs", type=int, default=1, help="pairs per step")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [time_steps(p, input_size=args.input_size, pairs=args.pairs, runs=args.runs, warmup=args.warmup,
                       device=args.device) for p in args.precisions]
    machine = machine_info(torch.device(args.device))
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
        return
    print(f"student training step, random weights ({machine.get('gpu') or machine.get('cpu')}, "
          f"{machine['threads']} threads, load {machine.get('load_average')})")
    print("| precision | input | pairs/step | median s/step | fastest |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['precision']} | {row['input_size']} | {row['pairs_per_step']} | "
              f"{row['median_s']:.2f} | {row['min_s']:.2f} |")


if __name__ == "__main__":
    main()
