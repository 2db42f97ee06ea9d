"""A model as a driver needs it: its canvas, config and grid, without its weights."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..features.base import Extractor
from ..store.folder import extractor_identity
from .config import ModelSpec


def shape_of(model: ModelSpec | Extractor) -> tuple[Extractor, dict[str, Any]]:
    """The model as the driver needs it (its preparer, config and grid, no weights) and its store
    identity: a preset is built on the ``meta`` device, which allocates nothing and loads nothing."""
    if isinstance(model, Extractor):
        return model, extractor_identity(model)
    from ..features.registry import build_extractor, get_preset

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the processes that build the model say what it needs to
        shape = build_extractor(
            model.name, weights=model.weights, random_weights=True, device="meta", **model.overrides
        )
    identity = extractor_identity(shape)
    identity["random_weights"] = bool(model.random_weights and get_preset(model.name).has_weights)
    return shape, identity
