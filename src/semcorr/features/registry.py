"""Named extractor presets: ``build_extractor("dinov2-b-reg", layer=11)``.

A preset is a default typed config (:mod:`semcorr.features.config`) plus the constructor of its
extractor; keyword overrides replace config fields (unknown names are refused, and the config
checks its values). Every built-in preset is declared here; :func:`register_preset` adds more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..runtime import resolve_device
from ..weights.releases import RELEASES
from .backbones.baseline import DenseSiftExtractor
from .backbones.dinov2 import DinoV2Extractor
from .backbones.sdxl.extractor import SdxlTurboExtractor
from .base import Extractor
from .config import (
    ARCHITECTURES,
    DEFAULT_MODEL,
    BaselineConfig,
    DinoSize,
    DinoV2Config,
    DistillDiftConfig,
    DiyScConfig,
    ExtractorConfig,
    GecoConfig,
    MarcoConfig,
    SdxlTurboConfig,
    StudentConfig,
    TeacherConfig,
    default_hub_id,
)
from .distill.student import build_student
from .distill.teacher import EnsembleTeacher
from .released.distilldift import OFFICIAL_URLS, VARIANTS, build_distilldift
from .released.diysc import DiyScExtractor
from .released.geco import GecoExtractor
from .released.marco import MarcoExtractor

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "Preset",
    "build_extractor",
    "get_preset",
    "make_config",
    "register_preset",
    "resolve_extractor",
]


@dataclass(frozen=True)
class Preset:
    """A named extractor: its default config, constructor, and what a user needs to know about it.

    ``build(config, random_weights=..., name=...)`` returns the extractor; ``has_weights`` is
    False for weight-free extractors (``random_weights`` then changes nothing).

    Attributes:
        description: what it is (architecture, input size, output grid).
        source: where its weights come from.
        licence: the licence of those weights.
        headline: its paper's headline figure and the protocol (``semcorr eval --protocol``) it was
            measured under, or why there is none.
    """

    name: str
    description: str
    config: ExtractorConfig
    build: Callable[..., Extractor]
    has_weights: bool = True
    source: str = ""
    licence: str = ""
    headline: str = ""


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


def build_extractor(
    name: str,
    *,
    weights: str | None = None,
    random_weights: bool = False,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> Extractor:
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
    target = resolve_device(device)
    extractor = preset.build(config, random_weights=random_weights and preset.has_weights, name=name)
    return extractor.to(target)


DINOV2_LICENCE = "Apache-2.0 (DINOv2)"
SDXL_LICENCE = "Stability AI Non-Commercial Research Community License (SDXL-Turbo): non-commercial use only"
DISTILLDIFT_FIGURE = (
    "SPair-71k PCK@0.1 65.1 (bbox, pooled over keypoints, in an 840² stretched frame with "
    "L = max(box) x 840/H, <), PF-WILLOW 77.4 and CUB-200-2011 89.4 (bbox, original pixels, <=): "
    "protocol distilldift-paper (the DistillDIFT paper's table, unsupervised student; its PF-WILLOW "
    "and CUB figures with the unreleased CO3D-refined weights)"
)


_DISTILLDIFT_HEADLINES = {
    "distilldift-us": DISTILLDIFT_FIGURE,
    "distilldift-ws": "SPair-71k PCK@0.1 70.6 with the authors' pose alignment (ADAPT_FLIP + MUTUAL_NN in "
    "eval/configs/eval_distilldift_ws.yaml; the paper's weakly supervised row): protocol "
    "distilldift-paper with pose alignment, which semcorr's distilldift-paper does not run (its "
    "--pose-align is for semcorr and common)",
}


def _hub_source(size: DinoSize, registers: bool) -> str:
    return (
        f"Hugging Face {default_hub_id(size, registers)}, or --weights (save_pretrained folder or official DINOv2 .pth)"
    )


register_preset(
    Preset(
        "baseline",
        "weight-free dense SIFT-like gradient-orientation histograms (128-d, stride 14)",
        BaselineConfig(),
        DenseSiftExtractor,
        has_weights=False,
        source="none (weight-free)",
        licence="semcorr's own",
        headline="none: the weight-free baseline row of benchmark tables",
    )
)
for _size in ARCHITECTURES:
    for _registers in (True, False):
        register_preset(
            Preset(
                f"dinov2-{_size}{'-reg' if _registers else ''}",
                f"DINOv2 ViT-{_size.upper()}/14{' with registers' if _registers else ''}, last layer, 434² -> 31x31",
                DinoV2Config(size=_size, registers=_registers),
                DinoV2Extractor,
                source=_hub_source(_size, _registers),
                licence=DINOV2_LICENCE,
                headline=(
                    "SPair-71k PCK@0.1 59.2 at 434² (59.5 at 840²), PF-WILLOW 65.8 (67.4), CUB-200-2011 85.3 "
                    "(85.9): protocol distilldift-paper (the DistillDIFT paper's DINOv2 ViT-B rows; with or without "
                    "registers not stated)"
                    if (_size, _registers) == ("b", True)
                    else "none recorded in semcorr's sources"
                ),
            )
        )
register_preset(
    Preset(
        "sdxl-turbo",
        "SDXL-Turbo UNet features (up_blocks[0] stage 1, mean of 4 timesteps), 980² -> 31x31x1280",
        SdxlTurboConfig(),
        SdxlTurboExtractor,
        source="Hugging Face stabilityai/sdxl-turbo or --weights (diffusers folder); --vae tiny: madebyollin/taesdxl",
        licence=f"{SDXL_LICENCE}; TAESDXL MIT",
        headline="none recorded for SDXL-Turbo alone",
    )
)
register_preset(
    Preset(
        "teacher",
        "DistillDIFT teacher: SDXL-Turbo (980²) + DINOv2-B-reg (434²), each L2-normalised, concatenated: 31x31x2048",
        TeacherConfig(),
        EnsembleTeacher,
        source="SDXL-Turbo (--sdxl-weights) and DINOv2-B-reg (--dino-weights), as those presets",
        licence=f"{SDXL_LICENCE}; {DINOV2_LICENCE}",
        headline="none published for this teacher (the DistillDIFT paper's 64.0 on SPair-71k is DINOv2+SD1.5, sd-dino, "
        "another model; its SDXL-Turbo teacher has no figure in the paper's table)",
    )
)
register_preset(
    Preset(
        "student",
        "DistillDIFT student: DINOv2-B-reg + LoRA adapter (--adapter RUN/adapter from `semcorr distill`), "
        "434² -> 31x31x768; without --adapter it is the plain backbone",
        StudentConfig(),
        build_student,
        source=f"{_hub_source('b', True)}; the LoRA from --adapter (your `semcorr distill` run)",
        licence=f"{DINOV2_LICENCE}; yours for the adapter",
        headline=f"the released student: {DISTILLDIFT_FIGURE}",
    )
)
for _name, _variant in VARIANTS.items():
    register_preset(
        Preset(
            _name,
            f"DistillDIFT student released by the authors ({_variant} training), DINOv2-B-reg + LoRA, 434² -> "
            f"31x31x768{' (default model)' if _name == DEFAULT_MODEL else ''}",
            DistillDiftConfig(),
            build_distilldift,
            source=(
                f"{OFFICIAL_URLS[_name]}, downloaded on first use, or --weights"
                if _name in OFFICIAL_URLS
                else "--weights FILE.ckpt (the authors give no address)"
            ),
            licence="none stated in the authors' README",
            headline=_DISTILLDIFT_HEADLINES.get(_name, "none recorded in semcorr's sources"),
        )
    )


def resolve_extractor(
    model: str | Extractor,
    *,
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    **overrides: Any,
) -> Extractor:
    """``model`` itself when it is an :class:`Extractor`, else the preset built by :func:`build_extractor`.

    Raises:
        InputError: ``weights``, ``random_weights`` or config overrides given with an Extractor
            (they apply to a preset name only).
    """
    if isinstance(model, Extractor):
        if weights is not None or random_weights or overrides:
            raise InputError(
                "weights, random_weights and extractor settings apply to a preset name, not to an Extractor"
            )
        return model
    return build_extractor(model, weights=weights, random_weights=random_weights, device=device, **overrides)


@dataclass(frozen=True)
class _ReleasedPreset:
    """A preset whose weights are an authors' release (:data:`semcorr.weights.releases.RELEASES`):
    its source and licence lines are generated from the release record.

    Attributes:
        part: what the released file holds (``adapter``, ``LoRA``, ...).
        licence_of: what the release's licence covers, when the line says so.
        backbone: the DINOv2 backbone's (size, registers).
    """

    name: str
    description: str
    config: ExtractorConfig
    build: Callable[..., Extractor]
    part: str
    backbone: tuple[DinoSize, bool]
    headline: str
    licence_of: str = ""

    def preset(self) -> Preset:
        release = RELEASES[self.name]
        if release.ask_first:
            where = f"the authors' {release.filename}, never shipped, downloaded only with --download ({release.url})"
        else:
            where = f"{release.url}, downloaded on first use" + (" (SHA-256 checked)" if release.sha256 else "")
        backbone = _hub_source(*self.backbone).replace("--weights", "--backbone")
        licence = release.licence + (f" ({self.licence_of})" if self.licence_of else "")
        return Preset(
            self.name,
            self.description,
            self.config,
            self.build,
            source=f"{self.part}: {where}, or --weights; backbone: {backbone}",
            licence=f"{licence}; {DINOV2_LICENCE}",
            headline=self.headline,
        )


for _released in (
    _ReleasedPreset(
        "marco",
        "MARCO (CVPR 2026): DINOv2-L/14-reg + parallel adapters in blocks 15-23 + 2 upsampling blocks, "
        "770² -> 220x220x1024",
        MarcoConfig(),
        MarcoExtractor,
        part="adapters and upsampler",
        backbone=("l", True),
        headline="SPair-71k PCK@0.1 87.2 per image (bbox, <=, in the 770² stretched frame): protocol marco "
        "(the authors' README, supervised on SPair-71k)",
    ),
    _ReleasedPreset(
        "diy-sc",
        "DIY-SC (ICCV 2025), DINOv2-only adapter: DINOv2-B/14 (no registers) last block before the final "
        "norm + bottleneck adapter, 840² letterbox (Lanczos, black) -> 60x60x768",
        DiyScConfig(),
        DiyScExtractor,
        part="adapter",
        backbone=("b", False),
        licence_of="adapter",
        headline="SPair-71k PCK@0.1 74.3 per keypoint, 71.3 per image (bbox, <): protocol diy-sc (the authors' "
        "notebook on their released 0300_dino_spair results; trained on pseudo-labels)",
    ),
    _ReleasedPreset(
        "geco",
        "GECO (ICCV 2025): DINOv2-B/14 (no registers) with LoRA rank 10 on q and v of every block, folded "
        "in, 518² -> 37x37x768",
        GecoConfig(),
        GecoExtractor,
        part="LoRA",
        backbone=("b", False),
        licence_of="LoRA weights",
        headline="about 30 frames/s; state of the art on PF-PASCAL, APK and CUB (+6.0, +6.2, +4.1 PCK): protocol "
        "geco (PCK@0.1 of the image's longer side, per keypoint, <=; the paper's abstract)",
    ),
):
    register_preset(_released.preset())
