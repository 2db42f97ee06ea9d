"""An official DistillDIFT student written from the issue's description, independently of semcorr:
its state dict (random values, full-size shapes) and its forward pass (DINOv2 hub ViT-B/14-reg with
LoRA on the fused qkv layer), in plain torch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

WIDTH, DEPTH, HEADS, REGISTERS, PATCH, STORED_GRID = 768, 12, 12, 4, 14, 37
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def official_state_dict(rank: int = 8, seed: int = 0, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """Every key of a released ``distilled_*.ckpt`` with random values of a sensible scale."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int, std: float = 0.02, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std + mean

    state = {"cls_token": normal(1, 1, WIDTH, std=0.1), "register_tokens": normal(1, REGISTERS, WIDTH, std=0.1),
             "pos_embed": normal(1, 1 + STORED_GRID ** 2, WIDTH, std=0.1), "mask_token": normal(1, WIDTH),
             "patch_embed.proj.weight": normal(WIDTH, 3, PATCH, PATCH), "patch_embed.proj.bias": normal(WIDTH),
             "norm.weight": normal(WIDTH, std=0.1, mean=1.0), "norm.bias": normal(WIDTH)}
    for i in range(DEPTH):
        block = {"norm1.weight": normal(WIDTH, std=0.1, mean=1.0), "norm1.bias": normal(WIDTH),
                 "attn.qkv.qkv.weight": normal(3 * WIDTH, WIDTH), "attn.qkv.qkv.bias": normal(3 * WIDTH),
                 "attn.qkv.linear_a_q.weight": normal(rank, WIDTH, std=0.05),
                 "attn.qkv.linear_b_q.weight": normal(WIDTH, rank, std=0.05),
                 "attn.qkv.linear_a_v.weight": normal(rank, WIDTH, std=0.05),
                 "attn.qkv.linear_b_v.weight": normal(WIDTH, rank, std=0.05),
                 "attn.proj.weight": normal(WIDTH, WIDTH), "attn.proj.bias": normal(WIDTH),
                 "ls1.gamma": normal(WIDTH, std=0.05, mean=0.2), "norm2.weight": normal(WIDTH, std=0.1, mean=1.0),
                 "norm2.bias": normal(WIDTH), "mlp.fc1.weight": normal(4 * WIDTH, WIDTH),
                 "mlp.fc1.bias": normal(4 * WIDTH), "mlp.fc2.weight": normal(WIDTH, 4 * WIDTH),
                 "mlp.fc2.bias": normal(WIDTH), "ls2.gamma": normal(WIDTH, std=0.05, mean=0.2)}
        state.update({f"blocks.{i}.{name}": value for name, value in block.items()})
    return {prefix + key: value for key, value in state.items()}


def _position_embedding(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """DINOv2 hub's interpolate_pos_encoding for the -reg models (interpolate_offset=0, antialias=True):
    the stored 37x37 table as it is for a 518² input, else bicubic to the target grid by size."""
    stored = pos_embed.shape[1] - 1
    if grid[0] * grid[1] == stored and grid[0] == grid[1]:
        return pos_embed
    side = int(math.sqrt(stored))
    table = pos_embed[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    table = F.interpolate(table, size=grid, mode="bicubic", antialias=True)
    return torch.cat([pos_embed[:, :1], table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], dim=1)


@torch.no_grad()
def official_forward(state: dict[str, torch.Tensor], pixels: torch.Tensor, lora: bool = True,
                     prefix: str = "model.") -> torch.Tensor:
    """``x_norm_patchtokens`` of the official student for (B, 3, H, W) pixels in [0, 1]:
    (B, 768, H/14, W/14)."""
    w = {key[len(prefix):]: value for key, value in state.items()}
    x = (pixels - MEAN) / STD
    batch = x.shape[0]
    x = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=PATCH)
    grid = tuple(x.shape[-2:])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([w["cls_token"].expand(batch, -1, -1), x], dim=1)
    x = x + _position_embedding(w["pos_embed"], grid)
    x = torch.cat([x[:, :1], w["register_tokens"].expand(batch, -1, -1), x[:, 1:]], dim=1)
    tokens, head = x.shape[1], WIDTH // HEADS
    for i in range(DEPTH):
        b = {key[len(f"blocks.{i}."):]: value for key, value in w.items() if key.startswith(f"blocks.{i}.")}
        y = F.layer_norm(x, (WIDTH,), b["norm1.weight"], b["norm1.bias"], eps=1e-6)
        qkv = y @ b["attn.qkv.qkv.weight"].T + b["attn.qkv.qkv.bias"]
        if lora:  # added unscaled to the query (first 768) and value (last 768) outputs
            qkv[..., :WIDTH] += (y @ b["attn.qkv.linear_a_q.weight"].T) @ b["attn.qkv.linear_b_q.weight"].T
            qkv[..., -WIDTH:] += (y @ b["attn.qkv.linear_a_v.weight"].T) @ b["attn.qkv.linear_b_v.weight"].T
        q, k, v = qkv.reshape(batch, tokens, 3, HEADS, head).permute(2, 0, 3, 1, 4)
        attention = ((q * head ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (attention @ v).transpose(1, 2).reshape(batch, tokens, WIDTH)
        x = x + b["ls1.gamma"] * (y @ b["attn.proj.weight"].T + b["attn.proj.bias"])
        y = F.layer_norm(x, (WIDTH,), b["norm2.weight"], b["norm2.bias"], eps=1e-6)
        y = F.gelu(y @ b["mlp.fc1.weight"].T + b["mlp.fc1.bias"]) @ b["mlp.fc2.weight"].T + b["mlp.fc2.bias"]
        x = x + b["ls2.gamma"] * y
    x = F.layer_norm(x, (WIDTH,), w["norm.weight"], w["norm.bias"], eps=1e-6)
    return x[:, 1 + REGISTERS:].transpose(1, 2).reshape(batch, WIDTH, *grid)
