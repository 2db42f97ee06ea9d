"""Feature extractors: one contract (:class:`FeatureMap`), named presets, typed configs.

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "FeatureMap": "base", "Extractor": "base",
    "ExtractorConfig": "config", "BaselineConfig": "config", "DinoV2Config": "config", "StudentConfig": "config",
    "DistillDiftConfig": "config", "SdxlTurboConfig": "config", "TeacherConfig": "config",
    "ARCHITECTURES": "config", "DEFAULT_MODEL": "config",
    "DenseSiftExtractor": "baseline", "DinoV2Extractor": "dinov2", "StudentExtractor": "student",
    "build_student": "student", "SdxlTurboExtractor": "sdxl", "EnsembleTeacher": "teacher",
    "VARIANTS": "distilldift", "build_distilldift": "distilldift", "convert_checkpoint": "distilldift",
    "PRESETS": "registry", "Preset": "registry", "build_extractor": "registry", "get_preset": "registry",
    "register_preset": "registry", "resolve_extractor": "registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
