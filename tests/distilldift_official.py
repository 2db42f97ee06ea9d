"""An official DistillDIFT student written from the issue's description, independently of semcorr:
its state dict (random values, full-size shapes) and its forward pass (DINOv2 hub ViT-B/14-reg with
LoRA on the fused qkv layer), in plain torch."""

from __future__ import annotations

import torch
from official_dinov2 import official_patch_tokens

WIDTH, DEPTH, HEADS, REGISTERS, PATCH, STORED_GRID = 768, 12, 12, 4, 14, 37


def official_state_dict(rank: int = 8, seed: int = 0, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """Every key of a released ``distilled_*.ckpt`` with random values of a sensible scale."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int, std: float = 0.02, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std + mean

    state = {
        "cls_token": normal(1, 1, WIDTH, std=0.1),
        "register_tokens": normal(1, REGISTERS, WIDTH, std=0.1),
        "pos_embed": normal(1, 1 + STORED_GRID**2, WIDTH, std=0.1),
        "mask_token": normal(1, WIDTH),
        "patch_embed.proj.weight": normal(WIDTH, 3, PATCH, PATCH),
        "patch_embed.proj.bias": normal(WIDTH),
        "norm.weight": normal(WIDTH, std=0.1, mean=1.0),
        "norm.bias": normal(WIDTH),
    }
    for i in range(DEPTH):
        block = {
            "norm1.weight": normal(WIDTH, std=0.1, mean=1.0),
            "norm1.bias": normal(WIDTH),
            "attn.qkv.qkv.weight": normal(3 * WIDTH, WIDTH),
            "attn.qkv.qkv.bias": normal(3 * WIDTH),
            "attn.qkv.linear_a_q.weight": normal(rank, WIDTH, std=0.05),
            "attn.qkv.linear_b_q.weight": normal(WIDTH, rank, std=0.05),
            "attn.qkv.linear_a_v.weight": normal(rank, WIDTH, std=0.05),
            "attn.qkv.linear_b_v.weight": normal(WIDTH, rank, std=0.05),
            "attn.proj.weight": normal(WIDTH, WIDTH),
            "attn.proj.bias": normal(WIDTH),
            "ls1.gamma": normal(WIDTH, std=0.05, mean=0.2),
            "norm2.weight": normal(WIDTH, std=0.1, mean=1.0),
            "norm2.bias": normal(WIDTH),
            "mlp.fc1.weight": normal(4 * WIDTH, WIDTH),
            "mlp.fc1.bias": normal(4 * WIDTH),
            "mlp.fc2.weight": normal(WIDTH, 4 * WIDTH),
            "mlp.fc2.bias": normal(WIDTH),
            "ls2.gamma": normal(WIDTH, std=0.05, mean=0.2),
        }
        state.update({f"blocks.{i}.{name}": value for name, value in block.items()})
    return {prefix + key: value for key, value in state.items()}


@torch.no_grad()
def official_forward(
    state: dict[str, torch.Tensor], pixels: torch.Tensor, lora: bool = True, prefix: str = "model."
) -> torch.Tensor:
    """``x_norm_patchtokens`` of the official student for (B, 3, H, W) pixels in [0, 1]:
    (B, 768, H/14, W/14): the official DINOv2 forward (:mod:`official_dinov2`) with the LoRA updates
    added unscaled to the query (first 768) and value (last 768) outputs of each fused qkv layer."""
    w = {key[len(prefix) :]: value for key, value in state.items()}
    backbone = {key.replace(".attn.qkv.qkv.", ".attn.qkv."): value for key, value in w.items() if ".linear_" not in key}

    def extra(i: int, y: torch.Tensor) -> torch.Tensor:
        b = f"blocks.{i}.attn.qkv."
        new_q = (y @ w[b + "linear_a_q.weight"].T) @ w[b + "linear_b_q.weight"].T
        new_v = (y @ w[b + "linear_a_v.weight"].T) @ w[b + "linear_b_v.weight"].T
        return torch.cat([new_q, torch.zeros_like(new_q), new_v], dim=-1)

    return official_patch_tokens(backbone, pixels, heads=HEADS, registers=True, qkv_extra=extra if lora else None)
