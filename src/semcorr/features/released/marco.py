"""MARCO (Cuttano et al., "MARCO: Navigating the Unseen Space of Semantic Correspondence", CVPR 2026)
as the ``marco`` preset, loaded exactly from the authors' file.

    extractor = build_extractor("marco")                                  # marco_release.pth, downloaded on first use
    extractor = build_extractor("marco", weights="marco_release.pth", backbone="dinov2_vitl14_reg4_pretrain.pth")

Forward, as the authors' code (visinf/MARCO, ``models/marco.py``, ``models/adapters.py``,
``models/upsampling_head.py``, ``configs/model/marco.yaml``):

1. The image stretched to 770x770 (torchvision ``Resize((770, 770))`` on a PIL image: Pillow
   bilinear, 8-bit; their SPair-71k ``inference_res``), ImageNet normalisation.
2. DINOv2 ViT-L/14 with 4 registers (``dinov2_vitl14_reg`` from torch hub; not in MARCO's file),
   frozen. Blocks 15 to 23 (``adaptformer_stages: [15, 24]``) get a parallel adapter:
   ``x = x + ls1(attn(norm1(x)))``, then ``x = x + adapter(x) + ls2(mlp(norm2(x)))`` with
   ``adapter(x) = 0.1 * up_proj(ReLU(down_proj(LayerNorm(x))))`` (LayerNorm eps 1e-5, bottleneck
   ``channel_factor`` 0.5 of the width: 512).
3. ``get_intermediate_layers(n=1, reshape=True)``: the last block after the final norm, patch
   tokens: (B, 1024, 55, 55).
4. ``n_upscale`` = 2 blocks of ConvTranspose2d(1024, 1024, 2, stride 2), GELU, depthwise 3x3 conv
   without bias, LayerNorm over channels (timm ``LayerNorm2d``, eps 1e-6): (B, 1024, 220, 220).

MARCO matches these features by their raw dot product; :class:`~semcorr.features.base.FeatureMap`
keeps each cell's norm beside the L2-normalised features, so the ``marco`` protocol gets the raw
features back (:meth:`~semcorr.features.base.FeatureMap.raw_features`).

The file (``marco_release.pth``, the v1.0 release of visinf/MARCO, their torch.hub entry) is a
PyTorch pickle ``{"model": state_dict, "epoch": ..., "args": <OmegaConf DictConfig>}``; a plain state
dict, or ``{"model": ...}`` with or without other entries, reads the same. It is read by
:mod:`.safe_pickle`: ``args`` becomes an inert record, omegaconf is never imported. The state dict
holds only ``dino.blocks.{15..23}.adapter.{adapter_layer_norm_before,down_proj,up_proj}.{weight,bias}``
and ``upscale.{0,1}.{conv1.weight,conv1.bias,conv2.weight,norm.weight,norm.bias}`` (64 tensors): MARCO's
``state_dict`` keeps only adapter and upscale keys. Every key is accounted for: a missing or unknown
key, or a wrong shape, is refused by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import InputError
from ...weights.releases import check_state
from ..config import PATCH_SIZE, MarcoConfig
from .adapted import AdaptedDinoExtractor

if TYPE_CHECKING:
    from transformers import Dinov2WithRegistersModel
    from transformers.models.dinov2_with_registers.modeling_dinov2_with_registers import Dinov2WithRegistersLayer

LAYERS = "backbone.model.encoder.layer"
ADAPTER_PARTS = {"adapter_layer_norm_before": "norm", "down_proj": "down_proj", "up_proj": "up_proj"}


class Adapter(nn.Module):
    """AdaptFormer's bottleneck: ``scale * up(ReLU(down(LayerNorm(x))))``, (B, T, C) -> (B, T, C)."""

    def __init__(self, width: int, bottleneck: int, scale: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-5)
        self.down_proj = nn.Linear(width, bottleneck)
        self.up_proj = nn.Linear(bottleneck, width)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.up_proj(F.relu(self.down_proj(self.norm(x)))) * self.scale


class AdaptedLayer(nn.Module):
    """A frozen transformers DINOv2 layer with an adapter beside its MLP (MARCO's ``AdaptedBlock``)."""

    def __init__(self, block: Dinov2WithRegistersLayer, adapter: Adapter) -> None:
        super().__init__()
        self.block, self.adapter = block, adapter

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
        block = self.block
        attended, _ = block.attention(block.norm1(hidden_states), attention_mask=attention_mask, **kwargs)
        x = hidden_states + block.layer_scale1(attended)
        return x + self.adapter(x) + block.layer_scale2(block.mlp(block.norm2(x)))


class UpsampleBlock(nn.Module):
    """2x upsampling: ConvTranspose2d (2, stride 2), GELU, depthwise 3x3 conv (no bias), LayerNorm
    over channels (eps 1e-6): (B, C, h, w) -> (B, C, 2h, 2w)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(width, width, kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, groups=width, bias=False)
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv2(F.gelu(self.conv1(x)))
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def marco_state_shapes(blocks: range, width: int, upsample_blocks: int) -> dict[str, tuple[int, ...]]:
    """Every key of MARCO's state dict and its shape (bottleneck half the width)."""
    bottleneck = width // 2
    shapes: dict[str, tuple[int, ...]] = {}
    for i in blocks:
        prefix = f"dino.blocks.{i}.adapter."
        shapes.update(
            {
                f"{prefix}adapter_layer_norm_before.weight": (width,),
                f"{prefix}adapter_layer_norm_before.bias": (width,),
                f"{prefix}down_proj.weight": (bottleneck, width),
                f"{prefix}down_proj.bias": (bottleneck,),
                f"{prefix}up_proj.weight": (width, bottleneck),
                f"{prefix}up_proj.bias": (width,),
            }
        )
    for j in range(upsample_blocks):
        shapes.update(
            {
                f"upscale.{j}.conv1.weight": (width, width, 2, 2),
                f"upscale.{j}.conv1.bias": (width,),
                f"upscale.{j}.conv2.weight": (width, 1, 3, 3),
                f"upscale.{j}.norm.weight": (width,),
                f"upscale.{j}.norm.bias": (width,),
            }
        )
    return shapes


def convert_marco_state_dict(
    state: dict[str, Tensor], blocks: range, width: int, upsample_blocks: int, source: str = "checkpoint"
) -> dict[str, Tensor]:
    """MARCO's keys -> :class:`MarcoExtractor`'s (``backbone.model.encoder.layer.{i}.adapter.*``,
    ``upscale.{j}.*``; float32, CPU).

    Raises:
        CheckpointError: a key missing or unknown, or a wrong shape (named as in the file).
    """
    check_state(
        state,
        marco_state_shapes(blocks, width, upsample_blocks),
        source,
        f"a MARCO checkpoint (adapters in blocks {blocks.start}..{blocks.stop - 1}, {upsample_blocks} "
        f"upsampling blocks, width {width})",
    )
    ours = {}
    for key, value in state.items():
        if key.startswith("dino.blocks."):
            block, _, part, kind = key[len("dino.blocks.") :].split(".")
            key = f"{LAYERS}.{block}.adapter.{ADAPTER_PARTS[part]}.{kind}"
        ours[key] = value.detach().to("cpu", torch.float32)
    return ours


class MarcoExtractor(AdaptedDinoExtractor):
    """MARCO: (B, 3, 770, 770) in [0, 1] -> (B, 1024, 220, 220) upsampled adapted DINOv2-L features;
    the input resized with Pillow bilinear, as torchvision's ``Resize`` on the authors' PIL images."""

    RELEASE = "marco"
    config: MarcoConfig

    def __init__(
        self,
        config: MarcoConfig = MarcoConfig(),
        *,
        random_weights: bool = False,
        name: str = "marco",
        backbone: Dinov2WithRegistersModel | None = None,
    ) -> None:
        """Build from ``config``; ``backbone`` (a transformers ``Dinov2WithRegistersModel``, e.g. a tiny
        one in tests) replaces the one ``config.backbone`` names. ``random_weights``: all untrained
        (the up-projections start at zero in MARCO's code; here they are random as well)."""
        super().__init__(config, random_weights=random_weights, name=name, backbone=backbone)
        layers, width = self.backbone.model.encoder.layer, self.backbone.model.config.hidden_size
        blocks = range(*config.adapted_blocks)
        if blocks.stop > len(layers):
            raise InputError(
                f"{name}: adapted_blocks {config.adapted_blocks} beyond the backbone's {len(layers)} blocks"
            )
        for i in blocks:
            block = cast("Dinov2WithRegistersLayer", layers[i])  # MARCO's backbone has registers (ModuleList: Module)
            layers[i] = AdaptedLayer(block, Adapter(width, width // 2, config.adapter_scale))
        self.upscale = nn.Sequential(*[UpsampleBlock(width) for _ in range(config.upsample_blocks)])
        if self.released is not None:
            state, source = self.released
            converted = convert_marco_state_dict(state, blocks, width, config.upsample_blocks, source)
            own = {
                key: value
                for key, value in self.state_dict().items()
                if key.startswith("upscale.") or (key.startswith(LAYERS) and ".adapter." in key)
            }
            if set(converted) != set(own):  # cannot happen after the key check; guards a drifting converter
                raise RuntimeError(f"converted keys differ from the model's: {sorted(set(converted) ^ set(own))[:4]}")
            with torch.no_grad():
                for key, value in converted.items():
                    own[key].copy_(value)
        self.eval().requires_grad_(False)

    def grid_size(self, input_size: int | None = None) -> tuple[int, int]:
        side = (input_size or self.config.input_size) // PATCH_SIZE * 2**self.config.upsample_blocks
        return (side, side)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C, 4 S/14, 4 S/14) features (not yet L2-normalised)."""
        return self.upscale(self.backbone(pixels))
