"""The parts of SDXL(-Turbo) the teacher needs: UNet, VAE, both text encoders, tokenizers, noise schedule.

They come from a diffusers folder (a Hugging Face id such as ``stabilityai/sdxl-turbo`` or a local
``save_pretrained`` folder; fp16 variant files are used when present), or are built untrained
from the released architectures written below (``random_components``). Every load is strict:
a missing, unexpected or mis-shaped key is a :class:`~semcorr.errors.CheckpointError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from ....errors import CheckpointError
from ....extras import require_extra
from ....fileio import read_json
from ....weights.hub import resolve_pretrained

if TYPE_CHECKING:  # diffusers and transformers take seconds to import: only when a model is built
    from diffusers.models import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

VaeKind = Literal["full", "tiny"]
SDXL_TURBO_ID = "stabilityai/sdxl-turbo"

# The released architectures (stabilityai/sdxl-turbo, identical to SDXL base 1.0 but for sample_size).
SDXL_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    transformer_layers_per_block=(1, 2, 10),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    flip_sin_to_cos=True,
    freq_shift=0,
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    downsample_padding=1,
)
SDXL_VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    act_fn="silu",
    sample_size=512,
    scaling_factor=0.13025,
    force_upcast=True,
)
TAESDXL_CONFIG: dict[str, Any] = dict(  # madebyollin/taesdxl (diffusers' defaults, written out)
    encoder_block_out_channels=(64, 64, 64, 64),
    decoder_block_out_channels=(64, 64, 64, 64),
    num_encoder_blocks=(1, 3, 3, 3),
    num_decoder_blocks=(3, 3, 3, 1),
    latent_channels=4,
    act_fn="relu",
    upsample_fn="nearest",
    upsampling_scaling_factor=2,
    latent_magnitude=3,
    latent_shift=0.5,
    scaling_factor=1.0,
    force_upcast=False,
)
_CLIP_COMMON: dict[str, Any] = dict(
    vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1
)
CLIP_L_CONFIG: dict[str, Any] = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    projection_dim=768,
    hidden_act="quick_gelu",
    **_CLIP_COMMON,
)
CLIP_BIGG_CONFIG: dict[str, Any] = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    projection_dim=1280,
    hidden_act="gelu",
    **_CLIP_COMMON,
)
SDXL_SCHEDULE: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
)


@dataclass
class SdxlComponents:
    """What the SDXL teacher runs: a UNet, a VAE (full or tiny), two text encoders and tokenizers,
    and the training noise schedule (``alphas_cumprod``, (T,) float64)."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL | AutoencoderTiny
    text_encoder: CLIPTextModel
    text_encoder_2: CLIPTextModelWithProjection
    tokenizer: CLIPTokenizer
    tokenizer_2: CLIPTokenizer
    alphas_cumprod: Tensor


def alphas_cumprod(schedule: dict[str, Any]) -> Tensor:
    """(T,) float64 cumulative products of (1 - beta) for a diffusers scheduler config."""
    diffusers = require_extra("diffusers", "the SDXL-Turbo teacher")
    DDPMScheduler = diffusers.DDPMScheduler

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
    with torch.device("cpu"):  # also when the models are built under torch.device("meta")
        scheduler = DDPMScheduler(**{k: schedule[k] for k in keys if schedule.get(k) is not None})
    return scheduler.alphas_cumprod.to(torch.float64)


def byte_level_tokenizer(pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """A real CLIP BPE tokenizer with a byte-level vocabulary (514 tokens, no merges).

    Used with random weights, where CLIP's 49408-token vocabulary is not at hand: the text
    encoders are untrained then, so the prompt carries no meaning anyway.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate(alphabet + [c + "</w>" for c in alphabet])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=[], pad_token=pad_token, model_max_length=77)


def build_vae(kind: VaeKind) -> AutoencoderKL | AutoencoderTiny:
    """The released SDXL VAE or TAESDXL architecture, untrained."""
    diffusers = require_extra("diffusers", "the SDXL-Turbo teacher")
    AutoencoderKL, AutoencoderTiny = diffusers.AutoencoderKL, diffusers.AutoencoderTiny

    return AutoencoderKL(**SDXL_VAE_CONFIG) if kind == "full" else AutoencoderTiny(**TAESDXL_CONFIG)


def random_components(vae: VaeKind = "full") -> SdxlComponents:
    """The full SDXL-Turbo architecture, untrained (about 3.5B parameters; build it under
    ``torch.device("meta")`` to check shapes without allocating)."""
    diffusers = require_extra("diffusers", "the SDXL-Turbo teacher")
    UNet2DConditionModel = diffusers.UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    return SdxlComponents(
        unet=UNet2DConditionModel(**SDXL_UNET_CONFIG),
        vae=build_vae(vae),
        text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L_CONFIG)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG_CONFIG)),
        tokenizer=byte_level_tokenizer(),
        tokenizer_2=byte_level_tokenizer(pad_token="!"),
        alphas_cumprod=alphas_cumprod(SDXL_SCHEDULE),
    )


def _weight_patterns(vae: VaeKind, variant: str | None) -> list[str]:
    suffix = f".{variant}.safetensors" if variant else ".safetensors"
    patterns = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/*", "tokenizer_2/*"]
    parts = [("unet", "diffusion_pytorch_model"), ("text_encoder", "model"), ("text_encoder_2", "model")]
    for folder, stem in parts + ([("vae", "diffusion_pytorch_model")] if vae == "full" else []):
        patterns += [f"{folder}/*.json", f"{folder}/{stem}{suffix}", f"{folder}/{stem}-*{suffix}"]
    return patterns


def _variant(folder: Path, component: str, stem: str) -> str | None:
    """``"fp16"`` when the fp16 variant of a component's weights is present, else ``None``."""
    part = folder / component
    if (part / f"{stem}.fp16.safetensors").is_file() or (part / f"{stem}.safetensors.index.fp16.json").is_file():
        return "fp16"
    if (part / f"{stem}.safetensors").is_file() or (part / f"{stem}.safetensors.index.json").is_file():
        return None
    raise CheckpointError(f"{folder}: no {component}/{stem}[.fp16].safetensors (is this a diffusers SDXL folder?)")


def _check_loading(model_name: str, what: str, info: dict[str, Any]) -> None:
    problems = {kind: list(keys)[:5] for kind, keys in info.items() if keys and kind != "error_msgs"}
    if info.get("error_msgs"):
        problems["errors"] = [str(m).splitlines()[0] for m in info["error_msgs"][:3]]
    if problems:
        raise CheckpointError(f"{model_name}: {what} does not fit its config: {problems}")


def resolve_sdxl_folder(source: str, *, vae: VaeKind, model_name: str) -> Path:
    """A local diffusers folder holding ``source``'s SDXL parts (hub: fp16 variant files first)."""
    how = (
        "Supply them with --weights PATH (--sdxl-weights for the teacher): a diffusers folder with unet/, "
        "vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/."
    )
    folder = resolve_pretrained(
        source, model=model_name, allow_patterns=_weight_patterns(vae, "fp16"), how_to_supply=how
    )
    try:
        _variant(folder, "unet", "diffusion_pytorch_model")
    except CheckpointError:
        if Path(source).expanduser().exists():
            raise
        folder = resolve_pretrained(
            source, model=model_name, allow_patterns=_weight_patterns(vae, None), how_to_supply=how
        )
    return folder


def load_components(
    source: str,
    *,
    vae: VaeKind,
    model_name: str,
    dtype: torch.dtype = torch.float32,
    vae_dtype: torch.dtype = torch.float32,
    tiny_vae: AutoencoderTiny | None = None,
) -> SdxlComponents:
    """SDXL parts from a diffusers folder or hub id, loaded strictly.

    Args:
        source: a Hugging Face id (``stabilityai/sdxl-turbo``) or a local diffusers folder.
        vae: ``full`` loads ``vae/``; ``tiny`` uses ``tiny_vae`` (TAESDXL, loaded by the caller).
        dtype: dtype of the UNet and text encoders; ``vae_dtype`` that of the full VAE.
    """
    diffusers = require_extra("diffusers", "the SDXL-Turbo teacher")
    AutoencoderKL, UNet2DConditionModel = diffusers.AutoencoderKL, diffusers.UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = resolve_sdxl_folder(source, vae=vae, model_name=model_name)

    def diffusers_part(cls: Any, component: str, part_dtype: torch.dtype) -> Any:
        variant = _variant(folder, component, "diffusion_pytorch_model")
        model, info = cls.from_pretrained(
            folder, subfolder=component, variant=variant, torch_dtype=part_dtype, output_loading_info=True
        )
        _check_loading(model_name, f"{folder}/{component}", info)
        return model

    def text_part(cls: Any, component: str) -> Any:
        variant = _variant(folder, component, "model")
        model, info = cls.from_pretrained(folder / component, variant=variant, dtype=dtype, output_loading_info=True)
        _check_loading(model_name, f"{folder}/{component}", info)
        return model

    schedule_file = folder / "scheduler" / "scheduler_config.json"
    schedule = read_json(schedule_file, expect=dict) if schedule_file.is_file() else SDXL_SCHEDULE
    if vae == "tiny" and tiny_vae is None:
        raise ValueError("vae='tiny' needs the loaded TAESDXL model (tiny_vae=...)")
    for part in ("tokenizer", "tokenizer_2"):
        if not (folder / part).is_dir():
            raise CheckpointError(f"{model_name}: {folder} has no {part}/ folder (is this a diffusers SDXL folder?)")
    unet = diffusers_part(UNet2DConditionModel, "unet", dtype)
    vae_model = diffusers_part(AutoencoderKL, "vae", vae_dtype) if vae == "full" else tiny_vae
    assert vae_model is not None  # vae="tiny" without tiny_vae is refused above
    return SdxlComponents(
        unet=unet,
        vae=vae_model,
        text_encoder=text_part(CLIPTextModel, "text_encoder"),
        text_encoder_2=text_part(CLIPTextModelWithProjection, "text_encoder_2"),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
        alphas_cumprod=alphas_cumprod(schedule),
    )
