"""Official DINOv2 ``.pth`` state dicts (torch hub naming) -> transformers DINOv2 modules.

Every key of the file must be used and every parameter of the model filled; anything else is a
:class:`~semcorr.errors.CheckpointError` naming the keys.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor, nn

from ..errors import CheckpointError
from .safe_pickle import read_state_dict

# Official name (after "blocks.{i}.") -> transformers name (after "encoder.layer.{i}.").
_BLOCK_RENAMES = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.proj": "attention.o_proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "mlp.w3": "mlp.down_proj",
}
_TOP_LEVEL = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "register_tokens": "embeddings.register_tokens",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)\.(weight|bias|gamma)$")


def _convert_block_entry(match: re.Match[str], value: Tensor) -> dict[str, Tensor] | None:
    index, module, kind = match.groups()  # of _BLOCK_KEY
    prefix = f"encoder.layer.{index}."
    if module == "attn.qkv":  # fused (3D, D) -> q, k, v
        query, key, val = value.chunk(3, dim=0)
        return {f"{prefix}attention.{n}_proj.{kind}": t for n, t in zip("qkv", (query, key, val))}
    if module == "mlp.w12":  # fused SwiGLU input: first half gates, second half is the value path
        gate, up = value.chunk(2, dim=0)
        return {f"{prefix}mlp.gate_proj.{kind}": gate, f"{prefix}mlp.up_proj.{kind}": up}
    if module in ("ls1", "ls2") and kind == "gamma":
        return {f"{prefix}layer_scale{module[-1]}.lambda1": value}
    if module in _BLOCK_RENAMES and kind != "gamma":
        return {f"{prefix}{_BLOCK_RENAMES[module]}.{kind}": value}
    return None


def convert_official_state_dict(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Rename an official DINOv2 state dict to transformers keys.

    Returns:
        the converted dict, and the official keys that have no counterpart.
    """
    converted: dict[str, Tensor] = {}
    unused: list[str] = []
    for key, value in state.items():
        if key in _TOP_LEVEL:
            converted[_TOP_LEVEL[key]] = value
        elif key == "mask_token":
            converted["embeddings.mask_token"] = value.reshape(1, -1)
        elif (match := _BLOCK_KEY.match(key)) and (entries := _convert_block_entry(match, value)):
            converted.update(entries)
        else:
            unused.append(key)
    return converted, unused


def load_official_checkpoint(model: nn.Module, path: Path, *, registers: bool) -> None:
    """Load an official DINOv2 ``.pth`` into a transformers DINOv2 model, accounting for every key."""
    state = read_state_dict(path, what="a DINOv2 state dict")
    if ("register_tokens" in state) != registers:
        has = "has" if "register_tokens" in state else "has no"
        raise CheckpointError(
            f"{path}: the checkpoint {has} register tokens; pick the "
            f"{'-reg' if not registers else 'non-reg'} variant of the model"
        )
    converted, unused = convert_official_state_dict(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if unused or missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit {type(model).__name__} (unknown keys: {unused + unexpected}, missing: {missing})"
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise CheckpointError(f"{path}: tensor shapes do not fit the model (checkpoint vs model): {wrong[:4]}")
    model.load_state_dict(converted, strict=True)
