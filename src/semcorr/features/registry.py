"""Named extractor presets: ``build_extractor("dinov2-b-reg", layer=11)``.

A preset is a default typed config plus a constructor; keyword overrides replace config fields
(unknown names are refused). Later modules add their presets with :func:`register_preset`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import InputError
from .base import Extractor, ExtractorConfig

# The model of `semcorr match`, `demo`, `video`, `segment` and `eval` when none is named: the
# authors' released DistillDIFT student (downloaded on first use; see features/distilldift.py).
DEFAULT_MODEL = "distilldift-us"


@dataclass(frozen=True)
class Preset:
    """A named extractor: its default config, constructor and a one-line description.

    ``build(config, random_weights=..., name=...)`` returns the extractor.
    """

    name: str
    description: str
    config: ExtractorConfig
    build: Callable[..., Extractor]
    has_weights: bool = True


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> None:
    """Add a preset (a name may be registered once)."""
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is already registered")
    PRESETS[preset.name] = preset


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise InputError(f"device {device!r} is not a torch device ({error})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return resolved


def make_config(preset: Preset, weights: str | None = None, **overrides: Any) -> ExtractorConfig:
    """The preset's config with ``overrides`` applied; unknown setting names are refused."""
    names = {f.name for f in dataclasses.fields(preset.config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InputError(f"{preset.name}: unknown setting(s) {unknown}; settings are: {sorted(names)}")
    if weights is not None:
        if "weights" not in names:
            raise InputError(f"{preset.name} has no weights to load; drop --weights")
        overrides["weights"] = str(weights)
    return dataclasses.replace(preset.config, **overrides)


def build_extractor(name: str, *, weights: str | None = None, random_weights: bool = False,
                    device: str | torch.device | None = None, **overrides: Any) -> Extractor:
    """Build a preset extractor.

    Args:
        name: a preset name (see :data:`PRESETS`).
        weights: a Hugging Face id, local folder or checkpoint file instead of the default.
        random_weights: the same architecture, untrained (for timing and tests).
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        **overrides: config fields to change, e.g. ``input_size=448``, ``layer=11``.
    """
    preset = get_preset(name)
    config = make_config(preset, weights, **overrides)
    extractor = preset.build(config, random_weights=random_weights and preset.has_weights, name=name)
    return extractor.to(resolve_device(device))
