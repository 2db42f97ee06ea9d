"""Digests that say whether two results were measured on the same weights and the same pairs.

``weights_digest``: SHA-256 of the extractor's state dict as it ran (after any LoRA merge; built on
the CPU before it moves to a device): for every entry in sorted name order, its name, dtype, shape
and raw bytes. Every byte is read once (about 0.2 s for DINOv2-B's 350 MB on one CPU core); no file
is read again. ``"random"`` for random weights, ``None`` for an extractor without parameters.

``pairs_digest``: SHA-256 of the pairs as the loader gave them (before a protocol leaves out any
keypoint): id, category, the images' folder and file names, sizes, boxes, keypoint ids, visibility
and coordinates (to 1e-3 px). The same data in another folder gives the same digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from ..data.pairs import Pair
from ..features.base import Extractor

PREFIX = "sha256:"


def weights_digest(extractor: Extractor) -> str | None:
    """``sha256:<hex>`` of the extractor's state dict, ``"random"`` for random weights, ``None`` for none."""
    if extractor.random_weights:
        return "random"
    if next(extractor.parameters(), None) is None:
        return None
    import torch

    state = extractor.state_dict()
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return PREFIX + digest.hexdigest()


def _short_path(path: object) -> str:
    parts = str(path).replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def _rounded(values: np.ndarray) -> list:
    return np.round(np.asarray(values, np.float64), 3).tolist()


def pairs_digest(pairs: Sequence[Pair]) -> str:
    """``sha256:<hex>`` of the pair list (see the module)."""
    digest = hashlib.sha256()
    for pair in pairs:
        record = [
            pair.id,
            pair.benchmark,
            pair.category,
            _short_path(pair.source_image),
            _short_path(pair.target_image),
            list(pair.source_size),
            list(pair.target_size),
            _rounded(pair.source_box),
            _rounded(pair.target_box),
            pair.keypoint_ids.tolist(),
            pair.source_visible.tolist(),
            pair.target_visible.tolist(),
            _rounded(pair.source_points),
            _rounded(pair.target_points),
        ]
        digest.update(json.dumps(record, separators=(",", ":")).encode())
        digest.update(b"\n")
    return PREFIX + digest.hexdigest()
