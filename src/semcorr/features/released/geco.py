"""GECO (Hartwig et al., "GECO: Geometrically Consistent Embedding with Lightspeed Inference",
ICCV 2025) as the ``geco`` preset, loaded exactly from the authors' LoRA file.

    extractor = build_extractor("geco", weights="last_lora_weights.pth")   # the authors' file
    extractor = build_extractor("geco", download=True)                      # fetch it (licence unstated)

Forward, as the authors' code (reginehartwig/geco, ``src/models/featurizer/dinov2_lora.py``,
``configs/featurizer/dinov2.yaml``): the image resized to 518x518 (torchvision ``Resize`` on a PIL
image: Pillow bilinear, 8-bit), ImageNet normalisation, DINOv2 ViT-B/14 without registers
(``dinov2_vitb14``; 518² needs no position interpolation) whose every block's fused qkv output gets
``B_q A_q x`` added to its query third and ``B_v A_v x`` to its value third, unscaled; the last
block's tokens after the final norm (``get_intermediate_layers(n=1)``): (B, 768, 37, 37).

The file is the dict ``save_parameters`` writes: ``w_a_{k:03d}`` (r, 768) and ``w_b_{k:03d}`` (768, r)
for k = 0..23, in the order the LoRA layers were created, block by block, query first:
``w_*_{2i}`` is block i's query, ``w_*_{2i+1}`` its value (r = 10). At load the products ``B A`` are
folded into the ``q_proj`` / ``v_proj`` weights (no LoRA layers remain). Every key is accounted
for: a missing or unknown key, or a wrong shape, is refused by name. The file cannot say whether
its q and v were swapped (same names, same shapes); the tests show that the order used here is the
one that reproduces the authors' forward, and that the swapped order gives other features.

The authors state no licence for their weights: semcorr never ships them, and downloads them only
when asked (``download=True`` / ``--download``), saying so (:mod:`.released`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ...errors import CheckpointError
from ...weights.releases import check_state
from ..config import GecoConfig
from .adapted import AdaptedDinoExtractor

if TYPE_CHECKING:
    from transformers import Dinov2Model


def geco_state_shapes(rank: int, depth: int = 12, width: int = 768) -> dict[str, tuple[int, ...]]:
    """Every key of the authors' file and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for index in range(2 * depth):
        shapes[f"w_a_{index:03d}"] = (rank, width)
    for index in range(2 * depth):
        shapes[f"w_b_{index:03d}"] = (width, rank)
    return shapes


def convert_geco_state_dict(
    state: dict[str, Tensor], depth: int = 12, width: int = 768, source: str = "checkpoint"
) -> list[tuple[Tensor, Tensor]]:
    """Per block, the (width, width) updates ``B A`` of its query and value projections (float32).

    Raises:
        CheckpointError: a key missing or unknown, or a wrong shape (named as in the file).
    """
    if "w_a_000" not in state:
        raise CheckpointError(f"{source}: not a GECO LoRA file; missing keys: w_a_000 (keys: {sorted(state)[:4]}...)")
    rank = state["w_a_000"].shape[0]
    check_state(
        state,
        geco_state_shapes(rank, depth, width),
        source,
        f"GECO's LoRA (rank {rank}) for a {depth}-block, {width}-wide DINOv2",
    )

    def update(index: int) -> Tensor:
        product = state[f"w_b_{index:03d}"].double() @ state[f"w_a_{index:03d}"].double()
        return product.float().cpu()

    return [(update(2 * block), update(2 * block + 1)) for block in range(depth)]


class GecoExtractor(AdaptedDinoExtractor):
    """GECO: (B, 3, 518, 518) in [0, 1] -> (B, 768, 37, 37) DINOv2 tokens with the LoRA folded in;
    the input resized with Pillow bilinear, as torchvision's ``Resize`` on the authors' PIL images."""

    RELEASE = "geco"

    def __init__(
        self,
        config: GecoConfig = GecoConfig(),
        *,
        random_weights: bool = False,
        name: str = "geco",
        backbone: Dinov2Model | None = None,
    ) -> None:
        """Build from ``config``; ``backbone`` (a transformers ``Dinov2Model``, e.g. a tiny one in tests)
        replaces the one ``config.backbone`` names. ``random_weights``: untrained backbone, no LoRA."""
        super().__init__(config, random_weights=random_weights, name=name, backbone=backbone)
        if self.released is not None:
            state, source = self.released
            layers = self.backbone.model.encoder.layer
            updates = convert_geco_state_dict(state, len(layers), self.backbone.model.config.hidden_size, source)
            with torch.no_grad():
                for layer, (query, value) in zip(layers, updates):
                    layer.attention.q_proj.weight += query.to(layer.attention.q_proj.weight)
                    layer.attention.v_proj.weight += value.to(layer.attention.v_proj.weight)
        self.eval().requires_grad_(False)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C, S/14, S/14) patch tokens (not yet L2-normalised)."""
        return self.backbone(pixels)
