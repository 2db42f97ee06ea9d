"""DINOv2 patch features through transformers (``Dinov2Model`` / ``Dinov2WithRegistersModel``).

Weights come from a Hugging Face id (default ``facebook/dinov2-with-registers-base``), a local
folder saved with ``save_pretrained``, or an official DINOv2 ``.pth`` state dict (keys converted,
every key accounted for). ``random_weights=True`` builds the same architecture untrained.

Position embeddings are resized exactly as the official models do at any input size: the models
with registers pass the target grid size with antialiasing, which is what transformers does; the
models without registers pass ``scale_factor=((rows + 0.1) / 37, (cols + 0.1) / 37)`` without
antialiasing (the official ``interpolate_offset=0.1``), which transformers does not (it passes the
size; up to 1.7e-3 apart at 224² and 434²), so :func:`use_official_interpolation` replaces that step.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import MethodType
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import CheckpointError, InputError
from ...weights.dinov2_checkpoint import load_official_checkpoint
from ...weights.hub import resolve_pretrained
from ..base import Extractor, require_finite
from ..config import ARCHITECTURES, PATCH_SIZE, DinoV2Config

if TYPE_CHECKING:  # transformers is imported when a model is built: it takes seconds to import
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

    DinoBackbone = Dinov2Model | Dinov2WithRegistersModel  # a transformers DINOv2, with or without registers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The official DINOv2 models without registers add this to the patch grid before dividing by the
# stored grid side to get the bicubic scale factor (``interpolate_offset``; 0 for the -reg models).
INTERPOLATE_OFFSET = 0.1


def _interpolate_with_offset(self: Dinov2Embeddings, embeddings: Tensor, height: int, width: int) -> Tensor:
    """The official no-register position table for an input of ``height`` x ``width`` pixels:
    (1, 1 + rows * cols, C), given (B, 1 + rows * cols, C) ``embeddings`` (class token first)."""
    positions = self.position_embeddings
    stored = positions.shape[1] - 1
    if embeddings.shape[1] - 1 == stored and height == width:
        return positions
    side = int(math.sqrt(stored))
    patch = self.patch_size
    assert isinstance(patch, int)  # DINOv2's patches are square: its config gives one side
    rows, cols = height // patch, width // patch
    table = positions[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    table = F.interpolate(
        table,
        scale_factor=((rows + INTERPOLATE_OFFSET) / side, (cols + INTERPOLATE_OFFSET) / side),
        mode="bicubic",
        antialias=False,
    )
    if tuple(table.shape[-2:]) != (rows, cols):  # cannot happen for offsets in (0, 1); guards a changed torch
        raise RuntimeError(f"position table resized to {tuple(table.shape[-2:])}, expected {(rows, cols)}")
    table = table.permute(0, 2, 3, 1).reshape(1, rows * cols, -1).to(positions.dtype)
    return torch.cat((positions[:, :1], table), dim=1)


def use_official_interpolation(model: DinoBackbone) -> DinoBackbone:
    """Make a transformers ``Dinov2Model`` (no registers) resize its position embeddings as the
    official code does (``interpolate_offset=0.1``, no antialias), in place. Returns ``model``.
    Models with registers already match the official code and are returned unchanged."""
    if getattr(model.config, "num_register_tokens", 0) == 0:
        official = MethodType(_interpolate_with_offset, model.embeddings)
        model.embeddings.interpolate_pos_encoding = official  # type: ignore[method-assign]  # this instance's, on purpose
    return model


def hf_config(config: DinoV2Config) -> Dinov2Config | Dinov2WithRegistersConfig:
    """The transformers config of the released architecture for ``config.size``."""
    from transformers import Dinov2Config, Dinov2WithRegistersConfig

    hidden, heads, layers, swiglu = ARCHITECTURES[config.size]
    settings: dict[str, Any] = dict(
        hidden_size=hidden,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        use_swiglu_ffn=swiglu,
        mlp_ratio=4,
        patch_size=PATCH_SIZE,
        image_size=518,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
    )
    if config.registers:
        return Dinov2WithRegistersConfig(num_register_tokens=4, **settings)
    return Dinov2Config(**settings)


def _model_class(config: DinoV2Config) -> type[Dinov2Model] | type[Dinov2WithRegistersModel]:
    from transformers import Dinov2Model, Dinov2WithRegistersModel

    return Dinov2WithRegistersModel if config.registers else Dinov2Model


def _untrained_backbone(architecture: Dinov2Config | Dinov2WithRegistersConfig) -> DinoBackbone:
    """The transformers model of ``architecture`` (:func:`hf_config`), with its initial weights."""
    from transformers import Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    if isinstance(architecture, Dinov2WithRegistersConfig):
        return Dinov2WithRegistersModel(architecture)
    return Dinov2Model(architecture)


def build_backbone(config: DinoV2Config, *, random_weights: bool, name: str, option: str = "--weights") -> DinoBackbone:
    """The transformers model with weights loaded (or random), all of its blocks kept; ``option``
    is the command-line option that supplies its weights (for messages)."""
    architecture = hf_config(config)
    architecture._attn_implementation = "sdpa"
    model_class = _model_class(config)
    if random_weights:
        return _untrained_backbone(architecture)
    source = config.weights_source
    if source.endswith((".pth", ".pt")):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InputError(f"{name}: checkpoint {source} does not exist")
        model = _untrained_backbone(architecture)
        load_official_checkpoint(model, path, registers=config.registers)
        require_finite(model.state_dict(), str(path))
        return model
    folder = resolve_pretrained(
        source,
        model=name,
        allow_patterns=["*.json", "*.safetensors"],
        how_to_supply=f"Supply them with {option} PATH (a folder saved by save_pretrained, or an official "
        "DINOv2 .pth file).",
    )
    # output_loading_info=True makes it return (model, info); transformers types only the model
    model, info = cast(
        "tuple[DinoBackbone, dict[str, list[str]]]",
        model_class.from_pretrained(folder, config=architecture, output_loading_info=True),
    )
    problems = {kind: keys for kind, keys in info.items() if keys and kind != "error_msgs"}
    if problems:
        raise CheckpointError(
            f"{name}: {folder} does not fit DINOv2-{config.size.upper()}"
            f"{' with registers' if config.registers else ''}: {problems}"
        )
    require_finite(model.state_dict(), str(folder))
    return model


class DinoV2Extractor(Extractor):
    """DINOv2 patch tokens as dense features: (B, C, S/14, S/14), e.g. (B, 768, 31, 31) at 434;
    its global embedding is the class token."""

    stride = PATCH_SIZE
    embedding_kind = "class token"
    config: DinoV2Config
    mean: Tensor  # buffers, registered in __init__
    std: Tensor

    def __init__(
        self,
        config: DinoV2Config = DinoV2Config(),
        *,
        random_weights: bool = False,
        name: str | None = None,
        backbone: DinoBackbone | None = None,
        weights_option: str = "--weights",
    ) -> None:
        """Build from ``config``; ``backbone`` (a transformers DINOv2 model, e.g. a tiny one in
        tests) replaces the released architecture and its weights. ``weights_option`` names the
        option that supplies the weights in messages (``--backbone`` under another model)."""
        super().__init__()
        self.name = name or f"dinov2-{config.size}{'-reg' if config.registers else ''}"
        depth = backbone.config.num_hidden_layers if backbone is not None else hf_config(config).num_hidden_layers
        if config.layer is not None and not 1 <= config.layer <= depth:
            raise InputError(f"{self.name} has blocks 1..{depth}, got layer={config.layer}")
        model = (
            backbone
            if backbone is not None
            else build_backbone(config, random_weights=random_weights, name=self.name, option=weights_option)
        )
        use_official_interpolation(model)
        self.config = config
        self.random_weights = random_weights
        if config.layer is not None:
            model.encoder.layer = model.encoder.layer[: config.layer]
            model.config.num_hidden_layers = config.layer
        self.model = model.eval().requires_grad_(False)
        self.num_prefix_tokens = 1 + getattr(model.config, "num_register_tokens", 0)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C, S/14, S/14) patch tokens (not yet L2-normalised)."""
        return self.forward_with_embedding(pixels)[0]

    def forward_with_embedding(  # type: ignore[override]  # a Tensor: only the teacher's canvases are a dict
        self, pixels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) in [0, 1] -> patch tokens (B, C, S/14, S/14) and class tokens (B, C), from
        one pass (neither L2-normalised)."""
        batch, _, height, width = pixels.shape
        tokens = self.model(pixel_values=(pixels - self.mean) / self.std).last_hidden_state
        patches = tokens[:, self.num_prefix_tokens :]
        return patches.transpose(1, 2).reshape(batch, -1, height // PATCH_SIZE, width // PATCH_SIZE), tokens[:, 0]
