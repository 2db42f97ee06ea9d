"""A real training process (distillation, or refinement with ``--finetune``) for the resume and
multi-process tests (not collected by pytest).

    python tests/distill_worker.py CONFIG.json RUN [--finetune] [--delay SECONDS] [--dump DIR]

Trains the tiny test student (``tiny_backbone()``) with the settings in CONFIG.json (a
DistillConfig, or a FinetuneConfig with ``--finetune``); ``--delay`` sleeps after every step (so a
test can kill it mid-run); ``--dump`` writes this rank's LoRA weights to DIR/rank{R}.safetensors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import tiny_backbone  # noqa: E402  (after sys.path names the tests folder)

from semcorr.train import DistillConfig, FinetuneConfig, distill, finetune  # noqa: E402  (after sys.path names the tests folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--dump")
    parser.add_argument("--finetune", action="store_true", help="CONFIG is a FinetuneConfig")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = json.loads(Path(args.config).read_text())
    on_step = (lambda step, loss: time.sleep(args.delay)) if args.delay else None
    if args.finetune:
        result = finetune(FinetuneConfig(**settings), args.out, backbone=tiny_backbone(), on_step=on_step)
    else:
        result = distill(DistillConfig(**settings), args.out, backbone=tiny_backbone(), on_step=on_step)
    if args.dump:
        rank = int(os.environ.get("RANK", 0))
        Path(args.dump).mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in result.student.lora_state().items()}
        save_file(state, str(Path(args.dump) / f"rank{rank}.safetensors"))


if __name__ == "__main__":
    main()
