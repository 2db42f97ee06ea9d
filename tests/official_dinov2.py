"""The official DINOv2 forward pass (facebookresearch/dinov2 hub models) in plain torch, written from
its description independently of semcorr and of transformers: any width, depth and head count, with
or without registers, hooks for the additions of MARCO (an adapter beside the MLP) and GECO (LoRA
added to the fused qkv output). Official key names (``blocks.{i}.attn.qkv.weight``, ``ls1.gamma``...).

Position table: the stored 37x37 grid (518² inputs) is used as it is for a square input of that many
patches; otherwise it is resized bicubically. Models without registers pass
``scale_factor=((rows + 0.1) / 37, (cols + 0.1) / 37)`` without antialiasing (``interpolate_offset=0.1``);
models with registers pass the target size with antialiasing (``interpolate_offset=0``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

PATCH, STORED_GRID = 14, 37
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def random_official_state(width: int, depth: int, registers: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key of an official DINOv2 hub state dict (MLP 4x, ``mask_token``), random values."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int, std: float = 0.1, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std + mean

    state = {
        "cls_token": normal(1, 1, width),
        "pos_embed": normal(1, 1 + STORED_GRID**2, width),
        "mask_token": normal(1, width),
        "patch_embed.proj.weight": normal(width, 3, PATCH, PATCH, std=0.05),
        "patch_embed.proj.bias": normal(width),
        "norm.weight": normal(width, mean=1.0),
        "norm.bias": normal(width),
    }
    if registers:
        state["register_tokens"] = normal(1, 4, width)
    for i in range(depth):
        block = {
            "norm1.weight": normal(width, mean=1.0),
            "norm1.bias": normal(width),
            "attn.qkv.weight": normal(3 * width, width),
            "attn.qkv.bias": normal(3 * width),
            "attn.proj.weight": normal(width, width),
            "attn.proj.bias": normal(width),
            "ls1.gamma": normal(width, std=0.05, mean=0.3),
            "norm2.weight": normal(width, mean=1.0),
            "norm2.bias": normal(width),
            "mlp.fc1.weight": normal(4 * width, width),
            "mlp.fc1.bias": normal(4 * width),
            "mlp.fc2.weight": normal(width, 4 * width),
            "mlp.fc2.bias": normal(width),
            "ls2.gamma": normal(width, std=0.05, mean=0.3),
        }
        state.update({f"blocks.{i}.{name}": value for name, value in block.items()})
    return state


def saved_official_state(path, width: int, depth: int, registers: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`random_official_state`, also written to ``path`` as an official ``.pth`` file."""
    state = random_official_state(width, depth, registers, seed)
    torch.save(state, path)
    return state


def official_positions(pos_embed: torch.Tensor, grid: tuple[int, int], registers: bool) -> torch.Tensor:
    """(1, 1 + rows * cols, C): the class position and the patch table for a ``grid`` of patches."""
    stored = pos_embed.shape[1] - 1
    rows, cols = grid
    if rows * cols == stored and rows == cols:
        return pos_embed
    side = int(math.sqrt(stored))
    table = pos_embed[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    if registers:
        table = F.interpolate(table, size=(rows, cols), mode="bicubic", antialias=True)
    else:
        table = F.interpolate(
            table, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic", antialias=False
        )
    assert tuple(table.shape[-2:]) == (rows, cols)
    return torch.cat([pos_embed[:, :1], table.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)], dim=1)


Hook = Callable[[int, torch.Tensor], torch.Tensor]


@torch.no_grad()
def official_patch_tokens(
    state: dict[str, torch.Tensor],
    pixels: torch.Tensor,
    *,
    heads: int,
    registers: bool,
    final_norm: bool = True,
    qkv_extra: Hook | None = None,
    adapter: Hook | None = None,
) -> torch.Tensor:
    """The patch tokens of the last block, (B, C, H/14, W/14), for (B, 3, H, W) pixels in [0, 1].

    Args:
        final_norm: pass the tokens through the final LayerNorm (``x_norm_patchtokens``) or not.
        qkv_extra: ``qkv_extra(i, y)`` -> (B, T, 3C) added to block ``i``'s fused qkv output (y: its input).
        adapter: ``adapter(i, x)`` -> (B, T, C) added beside the MLP of block ``i`` (x: after attention).
    """
    width = state["cls_token"].shape[-1]
    depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    x = (pixels - MEAN) / STD
    batch = x.shape[0]
    x = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=PATCH)
    grid = tuple(x.shape[-2:])
    x = torch.cat([state["cls_token"].expand(batch, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
    x = x + official_positions(state["pos_embed"], grid, registers)
    prefix = 1
    if registers:
        x = torch.cat([x[:, :1], state["register_tokens"].expand(batch, -1, -1), x[:, 1:]], dim=1)
        prefix += state["register_tokens"].shape[1]
    tokens, head = x.shape[1], width // heads
    for i in range(depth):
        b = {key[len(f"blocks.{i}.") :]: value for key, value in state.items() if key.startswith(f"blocks.{i}.")}
        y = F.layer_norm(x, (width,), b["norm1.weight"], b["norm1.bias"], eps=1e-6)
        qkv = y @ b["attn.qkv.weight"].T + b["attn.qkv.bias"]
        if qkv_extra is not None:
            qkv = qkv + qkv_extra(i, y)
        q, k, v = qkv.reshape(batch, tokens, 3, heads, head).permute(2, 0, 3, 1, 4)
        attention = ((q * head**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (attention @ v).transpose(1, 2).reshape(batch, tokens, width)
        x = x + b["ls1.gamma"] * (y @ b["attn.proj.weight"].T + b["attn.proj.bias"])
        y = F.layer_norm(x, (width,), b["norm2.weight"], b["norm2.bias"], eps=1e-6)
        y = F.gelu(y @ b["mlp.fc1.weight"].T + b["mlp.fc1.bias"]) @ b["mlp.fc2.weight"].T + b["mlp.fc2.bias"]
        x = x + (adapter(i, x) if adapter is not None else 0) + b["ls2.gamma"] * y
    if final_norm:
        x = F.layer_norm(x, (width,), state["norm.weight"], state["norm.bias"], eps=1e-6)
    return x[:, prefix:].transpose(1, 2).reshape(batch, width, *grid)


def assert_full_size_close(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """A full-size model against its reference: raw features within float32 rounding of 12 blocks
    (1e-5 of their scale), L2-normalised features (what ``extract`` returns) within 1e-5."""
    assert (ours - reference).abs().max() < 1e-5 * reference.abs().max()
    assert (F.normalize(ours, dim=1) - F.normalize(reference, dim=1)).abs().max() < 1e-5
