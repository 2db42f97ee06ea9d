"""Every extractor's settings: small frozen dataclasses that check themselves when built.

They import no model code (no torch), so the command line can show and check them at once, and a
run's settings are data a user can read, diff and reload (:mod:`semcorr.features.registry` pairs
each preset's config with its extractor).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol

from ..settings import (
    PRECISIONS,
    RESIZE_MODES,
    Precision,
    ResizeMode,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_numbers,
    check_text,
    fail,
)

# The model of `semcorr match`, `demo`, `video`, `segment` and `eval` when none is named: the
# authors' released DistillDIFT student (downloaded on first use; see features/distilldift.py).
DEFAULT_MODEL = "distilldift-us"
# Input canvases above this side are refused (a 4480² canvas is 320x320 DINOv2 patches), unless the
# environment variable raises it.
MAX_INPUT_SIZE = 4480
MAX_INPUT_SIZE_VARIABLE = "SEMCORR_MAX_INPUT_SIZE"


def max_input_size() -> int:
    """The largest input canvas side allowed: ``$SEMCORR_MAX_INPUT_SIZE``, else :data:`MAX_INPUT_SIZE`."""
    text = os.environ.get(MAX_INPUT_SIZE_VARIABLE, "")
    return int(text) if text.isdigit() and int(text) > 0 else MAX_INPUT_SIZE


def check_input_size(owner: object, field: str, minimum: int = 1) -> None:
    """``owner.field`` is a canvas side in [minimum, max_input_size()]."""
    check_int(owner, field, minimum=minimum)
    limit = max_input_size()
    if getattr(owner, field) > limit:
        raise fail(
            owner,
            field,
            f"must be at most {limit} pixels (set {MAX_INPUT_SIZE_VARIABLE} to allow more; "
            "memory grows with its square)",
        )


PATCH_SIZE = 14
DinoSize = Literal["s", "b", "l", "g"]
# (hidden size, heads, layers, SwiGLU MLP) of the released DINOv2 ViT-S/B/L/g at patch 14.
ARCHITECTURES: dict[DinoSize, tuple[int, int, int, bool]] = {
    "s": (384, 6, 12, False),
    "b": (768, 12, 12, False),
    "l": (1024, 16, 24, False),
    "g": (1536, 24, 40, True),
}
_HUB_NAMES = {"s": "small", "b": "base", "l": "large", "g": "giant"}


def default_hub_id(size: DinoSize, registers: bool) -> str:
    """The official Hugging Face id, e.g. ``facebook/dinov2-with-registers-base``."""
    return f"facebook/dinov2-{'with-registers-' if registers else ''}{_HUB_NAMES[size]}"


@dataclass(frozen=True)
class ExtractorConfig:
    """Settings every extractor shares.

    Attributes:
        input_size: side of the square input canvas in pixels.
        resize_mode: ``square`` (stretch, the papers' protocol) or ``letterbox`` (keep aspect ratio).
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast.
    """

    input_size: int = 434
    resize_mode: ResizeMode = "square"
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        check_input_size(self, "input_size")
        check_choice(self, "resize_mode", RESIZE_MODES)
        check_choice(self, "precision", PRECISIONS)


@dataclass(frozen=True)
class BaselineConfig(ExtractorConfig):
    """Settings of the dense SIFT baseline (all lengths in input-canvas pixels).

    Attributes:
        stride: input pixels per feature cell (434 -> 31 x 31, the grid of DINOv2-B/14).
        cell_size: side of one spatial bin; the descriptor covers ``spatial_bins * cell_size``
            (64 px by default: on affine-warped PF-WILLOW images at 434 px, PCK@0.05 rose from
            0.75 at 8 px to 0.91 at 12 px and 0.92 at 16 px, so 16 is the default).
        spatial_bins: spatial bins per side (4 -> 4 x 4 bins).
        orientation_bins: orientation bins over the full circle (signed gradients, as in SIFT).
        smoothing: sigma of the Gaussian blur applied to the grayscale image before gradients.
        clip: SIFT's clipping threshold applied between the two L2 normalisations.
        floor: constant added to every histogram entry before normalisation, in gradient units
            (intensity in [0, 1] per pixel); flat regions get a uniform, not a zero, descriptor.
    """

    stride: int = 14
    cell_size: int = 16
    spatial_bins: int = 4
    orientation_bins: int = 8
    smoothing: float = 1.0
    clip: float = 0.2
    floor: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("stride", "cell_size", "spatial_bins", "orientation_bins"):
            check_int(self, name, minimum=1)
        check_number(self, "smoothing", minimum=0)
        check_number(self, "clip", above=0)
        check_number(self, "floor", minimum=0)
        if self.input_size < self.stride:
            raise fail(self, "input_size", f"must be at least the stride ({self.stride} px)")


@dataclass(frozen=True)
class DinoV2Config(ExtractorConfig):
    """DINOv2 feature settings.

    Attributes:
        size: ``s``, ``b``, ``l`` or ``g`` (ViT-S/14, B/14, L/14, g/14).
        registers: the variant trained with 4 register tokens.
        layer: take the output of this block (1-based), passed through the final layer norm;
            ``None`` for the last block. Later blocks are dropped, not computed.
        weights: Hugging Face id, local folder or official ``.pth`` file; ``None`` for the
            official id of this size and variant.
    """

    size: DinoSize = "b"
    registers: bool = True
    layer: int | None = None
    weights: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "size", ARCHITECTURES)
        check_bool(self, "registers")
        check_int(
            self,
            "layer",
            minimum=1,
            maximum=ARCHITECTURES[self.size][2],
            optional=True,
            none_means="for the last block",
        )
        check_text(self, "weights")
        if self.input_size % PATCH_SIZE:
            raise fail(self, "input_size", f"must be a multiple of {PATCH_SIZE} (the patch size), e.g. 434 or 448")

    @property
    def weights_source(self) -> str:
        return self.weights or default_hub_id(self.size, self.registers)


@dataclass(frozen=True)
class StudentConfig(DinoV2Config):
    """Student settings: the DINOv2 backbone's (``weights`` etc.) plus the LoRA adapter's.

    Attributes:
        adapter: folder (or its ``adapter_model.safetensors``) of a trained adapter; ``None``: an
            untrained adapter (B = 0), i.e. the plain backbone.
        lora_rank: LoRA rank r of a new adapter (a loaded adapter brings its own).
        lora_alpha: LoRA alpha of a new adapter; the update is scaled by alpha / r.
        lora_dropout: dropout on the LoRA branch's input while training.
        merge: fold a loaded adapter into the backbone's weights (inference; no LoRA layers left).
    """

    adapter: str | None = None
    lora_rank: int = 8
    lora_alpha: float = 8.0
    lora_dropout: float = 0.05
    merge: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_text(self, "adapter")
        check_lora(self)
        check_bool(self, "merge")


class _LoraSettings(Protocol):
    @property
    def lora_dropout(self) -> float: ...


def check_lora(config: _LoraSettings) -> None:
    """The ``lora_rank``, ``lora_alpha`` and ``lora_dropout`` fields of a config."""
    check_int(config, "lora_rank", minimum=1)
    check_number(config, "lora_alpha", above=0)
    check_number(config, "lora_dropout", minimum=0)
    if not config.lora_dropout < 1:
        raise fail(config, "lora_dropout", "must be a finite number in [0, 1)")


@dataclass(frozen=True)
class DistillDiftConfig(StudentConfig):
    """A released DistillDIFT student: the student's settings plus where its weights come from.

    Attributes:
        url: download address of the authors' ``.ckpt``; ``None``: the preset's (``$SEMCORR_DISTILLDIFT_URL``,
            else the authors' address; none for ``ws`` and ``s``).
        weights: the authors' ``.ckpt`` file or a converted folder instead of the cache / download.
        merge: fold the LoRA into the q / v weights (inference; default).
    """

    url: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_text(self, "url")

    @property
    def weights_source(self) -> str:
        return self.weights or self.url or "cache"


@dataclass(frozen=True)
class SdxlTurboConfig(ExtractorConfig):
    """SDXL-Turbo feature settings.

    Attributes:
        input_size: canvas side; 980 gives a 31x31 grid (the student's at 434).
        timesteps: one UNet pass per timestep, features averaged.
        seed: seed of the noise generator (re-seeded every call); ``None`` for fresh random noise.
        prompt: prompt for a known category (``{category}`` is replaced).
        neutral_prompt: prompt when no category is given.
        time_ids: SDXL's size conditioning (original h, w, crop top, left, target h, w);
            ``None``: (S, S, 0, 0, S, S) for the canvas side S, as the SDXL pipeline does.
        vae: ``full`` (the SDXL VAE) or ``tiny`` (TAESDXL, much faster to encode).
        weights: Hugging Face id or local diffusers folder (default ``stabilityai/sdxl-turbo``).
        tiny_vae_weights: TAESDXL weights for ``vae="tiny"``: official ``taesdxl_encoder.safetensors``,
            a diffusers folder, or a hub id (default ``madebyollin/taesdxl``).
    """

    input_size: int = 980
    timesteps: tuple[int, ...] = (51, 101, 151, 201)
    seed: int | None = 0
    prompt: str = "a photo of a {category}"
    neutral_prompt: str = ""
    time_ids: tuple[int, int, int, int, int, int] | None = None
    vae: Literal["full", "tiny"] = "full"
    weights: str | None = None
    tiny_vae_weights: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_numbers(self, "timesteps", minimum=0, integers=True)
        check_int(self, "seed", optional=True, none_means="for fresh noise")
        if not isinstance(self.prompt, str) or not isinstance(self.neutral_prompt, str):
            raise fail(self, "prompt" if not isinstance(self.prompt, str) else "neutral_prompt", "must be a string")
        if self.time_ids is not None:
            check_numbers(self, "time_ids", minimum=0, integers=True)
            if len(self.time_ids) != 6:
                raise fail(self, "time_ids", "needs 6 numbers (original h, w, crop top, left, target h, w)")
        check_choice(self, "vae", ("full", "tiny"))
        check_text(self, "weights")
        check_text(self, "tiny_vae_weights")


@dataclass(frozen=True)
class TeacherConfig(ExtractorConfig):
    """Settings of the ensemble teacher.

    Attributes:
        input_size: DINOv2's canvas side (434 -> 31x31).
        sdxl_input_size: SDXL-Turbo's canvas side (980 -> 31x31); the grids must be equal.
        resize_mode, precision: apply to both members (their own fields are overridden).
        sdxl: SDXL-Turbo settings (timesteps, prompt, VAE, weights, ...).
        dino: DINOv2 settings (default ViT-B/14 with registers, last layer).
        teacher_weights: (SDXL, DINOv2) factors applied to each L2-normalised map before concatenation.
    """

    input_size: int = 434
    sdxl_input_size: int = 980
    sdxl: SdxlTurboConfig = field(default_factory=SdxlTurboConfig)
    dino: DinoV2Config = field(default_factory=DinoV2Config)
    teacher_weights: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_input_size(self, "sdxl_input_size")
        if not isinstance(self.sdxl, SdxlTurboConfig):
            raise fail(self, "sdxl", "must be an SdxlTurboConfig")
        if not isinstance(self.dino, DinoV2Config):
            raise fail(self, "dino", "must be a DinoV2Config")
        check_numbers(self, "teacher_weights", minimum=0)
        if len(self.teacher_weights) != 2 or max(self.teacher_weights) == 0:
            raise fail(self, "teacher_weights", "must be two non-negative numbers, not both 0")

    def member_configs(self) -> tuple[SdxlTurboConfig, DinoV2Config]:
        """The members' configs with this config's canvas sizes, resize mode and precision."""
        mode, precision = self.resize_mode, self.precision
        return (
            dataclasses.replace(self.sdxl, input_size=self.sdxl_input_size, resize_mode=mode, precision=precision),
            dataclasses.replace(self.dino, input_size=self.input_size, resize_mode=mode, precision=precision),
        )


@dataclass(frozen=True)
class AdaptedDinoConfig(ExtractorConfig):
    """Settings shared by the methods that adapt a frozen official DINOv2 (MARCO, DIY-SC, GECO).

    Attributes:
        weights: the authors' released file (adapters / LoRA); ``None``: semcorr's cache, then a
            download from the authors' address (see :mod:`semcorr.features.released`).
        backbone: the DINOv2 weights: a Hugging Face id, a ``save_pretrained`` folder or an
            official DINOv2 ``.pth``; ``None``: the official Hugging Face id of the method's backbone.
        download: allow downloading ``weights`` when they are not cached.
    """

    OPTIONS: ClassVar[dict[str, str]] = {"download": "--download"}
    BACKBONE: ClassVar[tuple[DinoSize, bool]] = ("b", False)  # DINOv2 size, registers

    weights: str | None = None
    backbone: str | None = None
    download: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_text(self, "weights")
        check_text(self, "backbone")
        check_bool(self, "download")
        if self.input_size % PATCH_SIZE:
            raise fail(self, "input_size", f"must be a multiple of {PATCH_SIZE} (the patch size)")

    def backbone_config(self) -> DinoV2Config:
        """The DINOv2 backbone's settings (weights from ``backbone``, this input size, resize mode, precision)."""
        size, registers = self.BACKBONE
        return DinoV2Config(
            size=size,
            registers=registers,
            weights=self.backbone,
            input_size=self.input_size,
            resize_mode=self.resize_mode,
            precision=self.precision,
        )


@dataclass(frozen=True)
class MarcoConfig(AdaptedDinoConfig):
    """MARCO (Cuttano et al., CVPR 2026): DINOv2 ViT-L/14 with registers, frozen, with parallel
    adapters (bottleneck half the width: 512) in blocks ``adapted_blocks``, the final norm's patch
    tokens upsampled by ``upsample_blocks`` blocks of 2x: 770² -> 220x220x1024 (their SPair-71k input).

    Attributes:
        adapted_blocks: (first, stop) 0-based block range with an adapter: blocks 15..23 of 24.
        adapter_scale: the adapter output's factor.
        upsample_blocks: number of 2x upsampling blocks.
    """

    BACKBONE: ClassVar[tuple[DinoSize, bool]] = ("l", True)

    input_size: int = 770
    adapted_blocks: tuple[int, int] = (15, 24)
    adapter_scale: float = 0.1
    upsample_blocks: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        check_numbers(self, "adapted_blocks", minimum=0, integers=True)
        if len(self.adapted_blocks) != 2 or self.adapted_blocks[0] >= self.adapted_blocks[1]:
            raise fail(self, "adapted_blocks", "must be two block indices (first, stop) with first < stop")
        check_number(self, "adapter_scale")
        check_int(self, "upsample_blocks", minimum=0)


@dataclass(frozen=True)
class DiyScConfig(AdaptedDinoConfig):
    """DIY-SC (Dünkel et al., ICCV 2025), its DINOv2-only adapter: DINOv2 ViT-B/14 without registers,
    the last block's tokens before the final norm, a bottleneck adapter, 840² letterbox (longest
    side 840 with Lanczos, centred on black) -> 60x60x768.

    Attributes:
        norm_groups: GroupNorm groups of the adapter (32).
    """

    input_size: int = 840
    resize_mode: ResizeMode = "letterbox"
    norm_groups: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self, "norm_groups", minimum=1)


@dataclass(frozen=True)
class GecoConfig(AdaptedDinoConfig):
    """GECO (Hartwig et al., ICCV 2025): DINOv2 ViT-B/14 without registers with unscaled LoRA on the
    query and value projections of every block, folded into the weights: 518² -> 37x37x768.

    Attributes:
        download: ``False`` by default: the authors state no licence for their weights, so they are
            downloaded only when asked.
    """

    input_size: int = 518
    download: bool = False
