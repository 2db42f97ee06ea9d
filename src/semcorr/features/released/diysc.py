"""DIY-SC's DINOv2-only adapter (Dünkel et al., "Do It Yourself: Learning Semantic Correspondence from
Pseudo-Labels", ICCV 2025) as the ``diy-sc`` preset, loaded exactly from the authors' file.

    extractor = build_extractor("diy-sc")                          # the authors' file, downloaded on first use
    extractor = build_extractor("diy-sc", weights="best.pth")      # ckpts/0300_dino_spair/best.pth (CC0)

Forward, as the authors' code (odunkel/DIY-SC, ``model_utils/extractor_dino.py``,
``model_utils/projection_network.py``, ``utils/utils_correspondence.py``):

1. Input: the longest side resized to 840 with Lanczos (Pillow, 8-bit), centred on a black 840²
   canvas (``resize(..., edge=False)``), ImageNet normalisation.
2. DINOv2 ViT-B/14 without registers (official interpolation, ``dinov2_vitb14``): the tokens of the
   last block (a forward hook on ``blocks[11]``), i.e. **before** the final LayerNorm, patch tokens:
   (B, 768, 60, 60).
3. One ResNet bottleneck block: 1x1 conv 768->192 (no bias), GroupNorm(32), ReLU; 3x3 conv 192->192,
   GroupNorm, ReLU; 1x1 conv 192->768, GroupNorm; plus the input; ReLU. Multiplied by
   ``softmax(mixing_weights)`` (one weight: 1). The caller L2-normalises (``normalize_feats``).

The file (a plain state dict, 12 tensors, saved on ``cuda:0``) holds ``bottleneck_layers.0.0.conv{1,2,3}.weight``,
``bottleneck_layers.0.0.conv{1,2,3}.norm.{weight,bias}``, ``mixing_weights`` and the training-only
temperatures ``logit_scale`` and ``self_logit_scale`` (of the contrastive loss; checked, not used by the
forward). Every key is accounted for: a missing or unknown key, or a wrong shape, is refused by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...weights.releases import check_state
from ..config import DiyScConfig
from .adapted import AdaptedDinoExtractor

if TYPE_CHECKING:
    from transformers import Dinov2Model

PREFIX = "bottleneck_layers.0.0."


class DiyScAdapter(nn.Module):
    """The refinement adapter: (B, C, h, w) DINOv2 tokens -> (B, C, h, w), C = ``channels``."""

    def __init__(self, channels: int = 768, groups: int = 32) -> None:
        super().__init__()
        hidden = channels // 4
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, hidden)
        self.conv3 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.norm3 = nn.GroupNorm(groups, channels)
        self.mixing_weights = nn.Parameter(torch.ones(1))

    def forward(self, tokens: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(tokens)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = F.relu(self.norm3(self.conv3(out)) + tokens)
        return torch.softmax(self.mixing_weights, dim=0)[0] * out


def diysc_state_shapes(channels: int = 768) -> dict[str, tuple[int, ...]]:
    """Every key of the authors' file and its shape, for a backbone of width ``channels``."""
    hidden = channels // 4
    shapes: dict[str, tuple[int, ...]] = {"logit_scale": (), "self_logit_scale": (), "mixing_weights": (1,)}
    for index, (cin, cout, kernel) in enumerate(((channels, hidden, 1), (hidden, hidden, 3), (hidden, channels, 1)), 1):
        shapes[f"{PREFIX}conv{index}.weight"] = (cout, cin, kernel, kernel)
        shapes[f"{PREFIX}conv{index}.norm.weight"] = (cout,)
        shapes[f"{PREFIX}conv{index}.norm.bias"] = (cout,)
    return shapes


def convert_diysc_state_dict(
    state: dict[str, Tensor], channels: int = 768, source: str = "checkpoint"
) -> dict[str, Tensor]:
    """The authors' keys -> :class:`DiyScAdapter`'s (float32, CPU); the training-only temperatures
    are checked and dropped.

    Raises:
        CheckpointError: a key missing or unknown, or a wrong shape (named as in the file).
    """
    check_state(state, diysc_state_shapes(channels), source, f"a DIY-SC adapter for {channels}-channel DINOv2 tokens")
    ours = {"mixing_weights": state["mixing_weights"]}
    for index in (1, 2, 3):
        ours[f"conv{index}.weight"] = state[f"{PREFIX}conv{index}.weight"]
        ours[f"norm{index}.weight"] = state[f"{PREFIX}conv{index}.norm.weight"]
        ours[f"norm{index}.bias"] = state[f"{PREFIX}conv{index}.norm.bias"]
    return {key: value.detach().to("cpu", torch.float32) for key, value in ours.items()}


class DiyScExtractor(AdaptedDinoExtractor):
    """DIY-SC: (B, 3, 840, 840) in [0, 1] -> (B, 768, 60, 60) refined DINOv2 features; the input is
    resized with Lanczos onto a black canvas, as the authors' ``resize``."""

    RELEASE, RESAMPLE, PAD_VALUE = "diy-sc", "lanczos", 0.0

    def __init__(
        self,
        config: DiyScConfig = DiyScConfig(),
        *,
        random_weights: bool = False,
        name: str = "diy-sc",
        backbone: Dinov2Model | None = None,
    ) -> None:
        """Build from ``config``; ``backbone`` (a transformers ``Dinov2Model``, e.g. a tiny one in tests)
        replaces the one ``config.backbone`` names. ``random_weights``: backbone and adapter untrained."""
        super().__init__(config, random_weights=random_weights, name=name, backbone=backbone)
        self.backbone.model.layernorm = nn.Identity()  # the last block's tokens, before the final norm
        channels = self.backbone.model.config.hidden_size
        self.adapter = DiyScAdapter(channels, config.norm_groups)
        if self.released is not None:
            state, source = self.released
            self.adapter.load_state_dict(convert_diysc_state_dict(state, channels, source), strict=True)
        self.eval().requires_grad_(False)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C, S/14, S/14) adapted features (not yet L2-normalised)."""
        return self.adapter(self.backbone(pixels))
