"""Feature extractors: one contract (:class:`FeatureMap`), named presets, typed configs."""

from __future__ import annotations

from .base import Extractor, ExtractorConfig, FeatureMap
from .baseline import BaselineConfig, DenseSiftExtractor
from .dinov2 import ARCHITECTURES, DinoV2Config, DinoV2Extractor
from .distilldift import VARIANTS, DistillDiftConfig, build_distilldift, convert_checkpoint
from .registry import DEFAULT_MODEL, PRESETS, Preset, build_extractor, get_preset, register_preset, resolve_device
from .sdxl import SdxlTurboConfig, SdxlTurboExtractor
from .student import StudentConfig, StudentExtractor, build_student
from .teacher import EnsembleTeacher, TeacherConfig

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
register_preset(Preset(
    "sdxl-turbo", "SDXL-Turbo UNet features (up_blocks[0] stage 1, mean of 4 timesteps), 980² -> 31x31x1280",
    SdxlTurboConfig(), SdxlTurboExtractor,
))
register_preset(Preset(
    "teacher", "DistillDIFT teacher: SDXL-Turbo (980²) + DINOv2-B-reg (434²), each L2-normalised, "
    "concatenated: 31x31x2048", TeacherConfig(), EnsembleTeacher,
))
register_preset(Preset(
    "student", "DistillDIFT student: DINOv2-B-reg + LoRA adapter (--adapter RUN/adapter from `semcorr distill`), "
    "434² -> 31x31x768; without --adapter it is the plain backbone", StudentConfig(), build_student,
))
for _name, _variant in VARIANTS.items():
    register_preset(Preset(
        _name, f"DistillDIFT student released by the authors ({_variant} training), DINOv2-B-reg + LoRA, 434² -> "
        f"31x31x768; {'downloaded on first use' if _name == 'distilldift-us' else '--weights FILE.ckpt'}"
        f"{' (default model)' if _name == DEFAULT_MODEL else ''}",
        DistillDiftConfig(), build_distilldift,
    ))

__all__ = [
    "BaselineConfig", "DEFAULT_MODEL", "DenseSiftExtractor", "DinoV2Config", "DinoV2Extractor", "DistillDiftConfig",
    "EnsembleTeacher", "Extractor",
    "ExtractorConfig", "FeatureMap", "PRESETS", "Preset", "build_extractor", "get_preset",
    "register_preset", "resolve_device", "SdxlTurboConfig", "SdxlTurboExtractor", "StudentConfig",
    "StudentExtractor", "TeacherConfig", "convert_checkpoint",
]
