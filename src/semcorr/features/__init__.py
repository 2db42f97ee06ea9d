"""Feature extractors: one contract (:class:`FeatureMap`), named presets, typed configs."""

from __future__ import annotations

from .base import Extractor, ExtractorConfig, FeatureMap
from .baseline import BaselineConfig, DenseSiftExtractor
from .dinov2 import ARCHITECTURES, DinoV2Config, DinoV2Extractor
from .registry import PRESETS, Preset, build_extractor, get_preset, register_preset, resolve_device

register_preset(Preset(
    "baseline", "weight-free dense SIFT-like gradient-orientation histograms (128-d, stride 14)",
    BaselineConfig(), lambda config, random_weights, name: DenseSiftExtractor(config), has_weights=False,
))
for _size in ARCHITECTURES:
    for _registers in (True, False):
        _name = f"dinov2-{_size}{'-reg' if _registers else ''}"
        register_preset(Preset(
            _name, f"DINOv2 ViT-{_size.upper()}/14{' with registers' if _registers else ''}, last layer",
            DinoV2Config(size=_size, registers=_registers), DinoV2Extractor,
        ))

__all__ = [
    "BaselineConfig", "DenseSiftExtractor", "DinoV2Config", "DinoV2Extractor", "Extractor",
    "ExtractorConfig", "FeatureMap", "PRESETS", "Preset", "build_extractor", "get_preset",
    "register_preset", "resolve_device",
]
