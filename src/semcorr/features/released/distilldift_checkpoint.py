"""The authors' DistillDIFT checkpoints (``distilled_us.ckpt`` etc.) -> our student, exactly.

The released file is a PyTorch state dict of the whole official student (DINOv2 ViT-B/14 with
registers from torch hub, LoRA wrapped around each block's fused qkv layer), keys prefixed
``model.``::

    model.cls_token (1, 1, 768)   model.register_tokens (1, 4, 768)   model.pos_embed (1, 1370, 768)
    model.mask_token (1, 768)     model.patch_embed.proj.{weight,bias}   model.norm.{weight,bias}
    model.blocks.{i}.norm1.*, attn.proj.*, ls1.gamma, norm2.*, mlp.fc1.*, mlp.fc2.*, ls2.gamma
    model.blocks.{i}.attn.qkv.qkv.{weight,bias}       (2304, 768), (2304,)  the original fused qkv
    model.blocks.{i}.attn.qkv.linear_a_q.weight       (r, 768)   } q = qkv(x)[:768] + B_q A_q x
    model.blocks.{i}.attn.qkv.linear_b_q.weight       (768, r)   }
    model.blocks.{i}.attn.qkv.linear_a_v.weight       (r, 768)   } v = qkv(x)[-768:] + B_v A_v x
    model.blocks.{i}.attn.qkv.linear_b_v.weight       (768, r)   }

Conversion: the whole backbone comes from the file (the released training also changed the qkv
weights), renamed by :mod:`.dinov2_checkpoint` (fused qkv split into q/k/v); ``linear_a_*`` become
peft's ``lora_A``, ``linear_b_*`` its ``lora_B`` on ``q_proj`` / ``v_proj``, with the rank r read
from the shapes and alpha = r, i.e. peft's scale alpha / r = 1: the official update is unscaled.

Every key is accounted for: a missing or unknown key, or a wrong shape, is a
:class:`~semcorr.errors.CheckpointError` that names it (official name, as in the file). Two
leniencies, both without effect on features: ``mask_token`` (used only for masked-image training)
may be absent and is then zero, and keys may come without the ``model.`` prefix (all of them or
none). A file that also wraps the dict (``{"state_dict": ...}``, Lightning style) is unwrapped.
Files are read by :mod:`.safe_pickle` (nothing in them is imported or run; a pickle that names a
code-running function is refused).
Tensors are converted to float32.

A converted student is a folder that the student machinery loads as it is::

    FOLDER/distilldift.json   {"format": "semcorr-distilldift", "version": 1, "source", "rank", ...}
    FOLDER/backbone/          config.json + model.safetensors (transformers ``save_pretrained`` layout;
                              also loads as ``--model dinov2-b-reg --weights FOLDER/backbone``)
    FOLDER/adapter/           a semcorr student adapter (``--model student --weights FOLDER/backbone
                              --adapter FOLDER/adapter``); its dropout (0.05) only acts in training
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from ...errors import CheckpointError, InputError
from ...fileio import read_versioned_json, write_atomically, write_json
from ...weights.dinov2_checkpoint import convert_official_state_dict
from ...weights.safe_pickle import read_state_dict
from ..backbones.dinov2 import hf_config
from ..base import require_finite
from ..config import DinoV2Config, StudentConfig
from ..distill.student import StudentExtractor

if TYPE_CHECKING:
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

PREFIX = "model."
MANIFEST = "distilldift.json"
FORMAT = "semcorr-distilldift"
VERSION = 1
BACKBONE_DIR = "backbone"
ADAPTER_DIR = "adapter"
_LORA_KEY = re.compile(r"blocks\.(\d+)\.attn\.qkv\.linear_([ab])_([qv])\.weight$")
_OPTIONAL = ("mask_token",)


@dataclass
class ConvertedStudent:
    """An official checkpoint in our names.

    Attributes:
        backbone: the full transformers ``Dinov2WithRegistersModel`` state dict (float32, each
            tensor its own storage; a model built from it may take ownership).
        lora: ``encoder.layer.{i}.attention.{q,v}_proj.lora_{A,B}.weight``: (r, 768) and (768, r).
        rank: the LoRA rank r (alpha = r: unscaled).
        official_keys: how many keys the file held.
    """

    backbone: dict[str, Tensor]
    lora: dict[str, Tensor]
    rank: int
    official_keys: int


def _architecture(config: DinoV2Config) -> Dinov2WithRegistersConfig:
    """The transformers config of a DistillDIFT student's backbone (a DINOv2 with registers)."""
    from transformers import Dinov2WithRegistersConfig

    architecture = hf_config(config)
    assert isinstance(architecture, Dinov2WithRegistersConfig)  # DistillDIFT students have registers
    return architecture


def distilldift_state_shapes(rank: int, config: DinoV2Config = DinoV2Config()) -> dict[str, tuple[int, ...]]:
    """Every key of an official DistillDIFT student file (without the prefix) and its shape."""
    architecture = _architecture(config)
    width, depth = architecture.hidden_size, architecture.num_hidden_layers
    hidden, patch, image_size = int(width * architecture.mlp_ratio), architecture.patch_size, architecture.image_size
    assert isinstance(patch, int) and isinstance(image_size, int)  # hf_config gives square sides
    positions = 1 + (image_size // patch) ** 2
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, width),
        "register_tokens": (1, architecture.num_register_tokens, width),
        "pos_embed": (1, positions, width),
        "mask_token": (1, width),
        "patch_embed.proj.weight": (width, 3, patch, patch),
        "patch_embed.proj.bias": (width,),
        "norm.weight": (width,),
        "norm.bias": (width,),
    }
    for i in range(depth):
        block = {
            "norm1.weight": (width,),
            "norm1.bias": (width,),
            "norm2.weight": (width,),
            "norm2.bias": (width,),
            "attn.qkv.qkv.weight": (3 * width, width),
            "attn.qkv.qkv.bias": (3 * width,),
            "attn.proj.weight": (width, width),
            "attn.proj.bias": (width,),
            "ls1.gamma": (width,),
            "ls2.gamma": (width,),
            "mlp.fc1.weight": (hidden, width),
            "mlp.fc1.bias": (hidden,),
            "mlp.fc2.weight": (width, hidden),
            "mlp.fc2.bias": (width,),
            "attn.qkv.linear_a_q.weight": (rank, width),
            "attn.qkv.linear_b_q.weight": (width, rank),
            "attn.qkv.linear_a_v.weight": (rank, width),
            "attn.qkv.linear_b_v.weight": (width, rank),
        }
        shapes.update({f"blocks.{i}.{name}": shape for name, shape in block.items()})
    return shapes


def _strip_prefix(state: dict[str, Tensor], source: str) -> tuple[dict[str, Tensor], str]:
    """Keys without ``model.``; returns the prefix used, for messages."""
    prefixed = [key.startswith(PREFIX) for key in state]
    if all(prefixed):
        return {key[len(PREFIX) :]: value for key, value in state.items()}, PREFIX
    if any(prefixed):
        odd = sorted(key for key in state if not key.startswith(PREFIX))
        raise CheckpointError(
            f"{source}: keys mix the '{PREFIX}' prefix with unprefixed ones, e.g. {odd[:3]}; "
            "not a DistillDIFT student checkpoint"
        )
    return dict(state), ""


def _rank(state: dict[str, Tensor]) -> int:
    ranks = [
        value.shape[0]
        for key, value in state.items()
        if (m := _LORA_KEY.match(key)) and m.group(2) == "a" and value.dim() == 2
    ]
    return ranks[0] if ranks else 8


def convert_distilldift_state_dict(state: dict[str, Tensor], source: str = "checkpoint") -> ConvertedStudent:
    """Map an official DistillDIFT student state dict to our backbone + LoRA names (see the module).

    Raises:
        CheckpointError: a key is missing or unknown, or a shape is wrong (names as in the file).
    """
    stripped, prefix = _strip_prefix(state, source)
    require_finite(stripped, source)
    rank = _rank(stripped)
    expected = distilldift_state_shapes(rank)
    missing = [prefix + k for k in expected if k not in stripped and k not in _OPTIONAL]
    unknown = [prefix + k for k in stripped if k not in expected]
    if missing or unknown:

        def listed(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "") if keys else "none"

        raise CheckpointError(
            f"{source}: not a DistillDIFT ViT-B/14-reg student checkpoint; missing keys: "
            f"{listed(missing)}; unknown keys: {listed(unknown)}"
        )
    wrong = [
        f"{prefix}{k} {tuple(v.shape)}, expected {expected[k]}"
        for k, v in stripped.items()
        if tuple(v.shape) != expected[k]
    ]
    if wrong:
        raise CheckpointError(
            f"{source}: tensor shapes do not fit a ViT-B/14-reg student with LoRA rank {rank}: {'; '.join(wrong[:4])}"
        )
    lora: dict[str, Tensor] = {}
    official: dict[str, Tensor] = {}
    for key, value in stripped.items():
        value = value.detach().to("cpu", torch.float32)
        if match := _LORA_KEY.match(key):
            block, kind, target = match.groups()
            lora[f"encoder.layer.{block}.attention.{target}_proj.lora_{kind.upper()}.weight"] = value
        else:
            official[key.replace(".attn.qkv.qkv.", ".attn.qkv.")] = value
    if "mask_token" not in official:
        official["mask_token"] = torch.zeros(expected["mask_token"])
    backbone, unused = convert_official_state_dict(official)
    if unused:  # cannot happen after the key check above; kept as a guard against a drifting converter
        raise CheckpointError(f"{source}: keys without a counterpart in the backbone: {unused[:6]}")
    # Copies: the model takes these over and merging writes into them; never into the caller's tensors.
    backbone = {key: value.clone() for key, value in backbone.items()}
    return ConvertedStudent(backbone, lora, rank, len(state))


def read_distilldift_checkpoint(path: str | os.PathLike) -> ConvertedStudent:
    """Read (:mod:`.safe_pickle`) and convert an official ``.ckpt`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: checkpoint file does not exist")
    state = read_state_dict(path, what="a DistillDIFT student state dict")
    return convert_distilldift_state_dict(state, source=str(path))


def build_backbone_from(converted: ConvertedStudent, config: DinoV2Config = DinoV2Config()) -> Dinov2WithRegistersModel:
    """A ``Dinov2WithRegistersModel`` holding ``converted.backbone`` (built on meta, no random init;
    the model takes the tensors over)."""
    from transformers import Dinov2WithRegistersModel

    architecture = _architecture(config)
    architecture._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = Dinov2WithRegistersModel(architecture)
    model.load_state_dict(converted.backbone, strict=True, assign=True)
    return model.eval()


def student_from(
    converted: ConvertedStudent, config: StudentConfig = StudentConfig(), *, name: str = "distilldift"
) -> StudentExtractor:
    """Our student holding ``converted`` (LoRA rank r, alpha r; not merged).

    ``config`` gives the extractor settings (input size, layer, precision...); its LoRA rank and
    alpha are replaced by the file's.
    """
    config = replace(config, lora_rank=converted.rank, lora_alpha=float(converted.rank), adapter=None, merge=False)
    student = StudentExtractor(config, backbone=build_backbone_from(converted, config), name=name)
    student.load_lora_state(converted.lora, source=name)
    return student


def save_converted(converted: ConvertedStudent, folder: str | os.PathLike, *, source: str) -> Path:
    """Write ``converted`` into ``folder`` (created; see the module for the layout). Returns ``folder``."""
    folder = Path(folder)
    backbone = folder / BACKBONE_DIR
    backbone.mkdir(parents=True, exist_ok=True)
    hf_config(DinoV2Config()).save_pretrained(backbone)
    write_atomically(
        backbone / "model.safetensors",
        safetensors_bytes({k: v.contiguous() for k, v in converted.backbone.items()}, metadata={"format": "pt"}),
    )
    student_from(converted).save_adapter(folder / ADAPTER_DIR)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "source": source,
        "rank": converted.rank,
        "alpha": converted.rank,
        "official_keys": converted.official_keys,
        "backbone": BACKBONE_DIR,
        "adapter": ADAPTER_DIR,
    }
    write_json(folder / MANIFEST, manifest)
    return folder


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a converted folder (checked), or an error saying how to make one."""
    path = Path(folder).expanduser() / MANIFEST
    if not path.is_file():
        raise InputError(
            f"{folder}: not a converted DistillDIFT folder (no {MANIFEST}); pass the authors' .ckpt "
            "file, or convert it with `semcorr convert-checkpoint FILE --out FOLDER`"
        )
    return read_versioned_json(path, FORMAT, VERSION, "manifest")
