"""Feature extractors: one contract (:class:`FeatureMap`), named presets, typed configs.

The contract is :mod:`.base`, the configs :mod:`.config` (no torch), the presets :mod:`.registry`;
model files are grouped by kind: :mod:`.backbones` (DINOv2, the baseline, SDXL-Turbo),
:mod:`.distill` (the teacher and the student) and :mod:`.released` (DistillDIFT, MARCO, DIY-SC,
GECO as their authors released them). Loading machinery lives in :mod:`semcorr.weights`.

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "FeatureMap": "base",
    "Extractor": "base",
    "ExtractorConfig": "config",
    "BaselineConfig": "config",
    "DinoV2Config": "config",
    "StudentConfig": "config",
    "DistillDiftConfig": "config",
    "SdxlTurboConfig": "config",
    "TeacherConfig": "config",
    "ARCHITECTURES": "config",
    "DEFAULT_MODEL": "config",
    "DenseSiftExtractor": "backbones.baseline",
    "DinoV2Extractor": "backbones.dinov2",
    "SdxlTurboExtractor": "backbones.sdxl.extractor",
    "StudentExtractor": "distill.student",
    "build_student": "distill.student",
    "EnsembleTeacher": "distill.teacher",
    "VARIANTS": "released.distilldift",
    "build_distilldift": "released.distilldift",
    "convert_checkpoint": "released.distilldift",
    "PRESETS": "registry",
    "Preset": "registry",
    "build_extractor": "registry",
    "get_preset": "registry",
    "register_preset": "registry",
    "resolve_extractor": "registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
