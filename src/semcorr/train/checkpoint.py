"""Training checkpoints that resume exactly: one file, written atomically, read with
``torch.load(weights_only=True)``.

``RUN/checkpoint.pt`` holds the LoRA weights, the optimiser and scheduler states, every rank's
RNG states (torch, CUDA, numpy, python) and the place in the run (epoch, steps done in it).
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from ..fileio import write_atomically
from ..weights.safe_pickle import unreadable

CHECKPOINT_FORMAT = "semcorr-distill-checkpoint"
CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (safe for ``weights_only`` loading)."""
    numpy_state = np.random.get_state(legacy=True)  # the default, named: numpy's stubs pick legacy=False
    assert isinstance(numpy_state, tuple)  # legacy=True gives the tuple form for the default bit generator
    kind, keys, position, has_gauss, gauss = numpy_state
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["gauss"])
    )
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["internal"].tolist()), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(path: Path, **content: Any) -> None:
    """Serialise ``content`` (tensors, dicts, lists, numbers, strings) to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **content}, buffer)
    write_atomically(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors land on the CPU)."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for damaged or foreign files
        raise unreadable(path, error) from None
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a {CHECKPOINT_FORMAT}")
    if content.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {content.get('version')}, this semcorr reads {CHECKPOINT_VERSION}"
        )
    return content


REQUIRED = ("config_digest", "world_size", "epoch", "step", "global_step", "lora", "optimizer", "scheduler", "rng")


def check_resumable(content: dict[str, Any], path: Path, config_digest: str, world_size: int) -> None:
    """Refuse an incomplete checkpoint, or one of another config or another number of processes."""
    missing = [key for key in REQUIRED if key not in content]
    if missing:
        raise CheckpointError(
            f"{path}: not a complete semcorr checkpoint (no {', '.join(missing)}); move it away "
            "to start over, or use another --out folder"
        )
    if content["config_digest"] != config_digest:
        raise InputError(f"{path}: made with another config; use another --out folder")
    if content["world_size"] != world_size:
        raise InputError(
            f"{path}: made by {content['world_size']} processes, now {world_size}; "
            "resume with the same number for an exact continuation"
        )
