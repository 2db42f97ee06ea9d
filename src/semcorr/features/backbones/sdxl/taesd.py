"""TAESDXL, the tiny autoencoder for SDXL latents, as diffusers' ``AutoencoderTiny``.

Weights come from the official files (``taesdxl_encoder.safetensors`` and
``taesdxl_decoder.safetensors`` from madebyollin/taesd, keys ``N.*``), from a diffusers folder
(``config.json`` + ``diffusion_pytorch_model.safetensors``) or from the Hugging Face id
``madebyollin/taesdxl``. Official keys map to diffusers as ``encoder.layers.N.*`` and
``decoder.layers.(N-1).*`` (the official decoder's layer 0 is a parameter-free clamp, which
diffusers applies outside its layer list). Every key is accounted for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ....errors import CheckpointError, InputError
from ....extras import require_extra
from ....weights.hub import resolve_pretrained
from .parts import build_vae

if TYPE_CHECKING:
    from diffusers.models import AutoencoderTiny

TAESDXL_ID = "madebyollin/taesdxl"
ENCODER_FILE = "taesdxl_encoder.safetensors"


def official_to_diffusers(state: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    """Rename an official TAESD ``encoder`` or ``decoder`` state dict to ``AutoencoderTiny`` keys."""
    renamed = {}
    for key, value in state.items():
        index, _, rest = key.partition(".")
        if not index.isdigit() or not rest:
            raise CheckpointError(f"TAESD {part}: unexpected key {key!r} (official keys look like '3.conv.0.weight')")
        layer = int(index) - (1 if part == "decoder" else 0)
        if layer < 0:
            raise CheckpointError(f"TAESD decoder: key {key!r} belongs to layer 0, the parameter-free clamp")
        renamed[f"{part}.layers.{layer}.{rest}"] = value
    return renamed


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None


def load_official(model: AutoencoderTiny, encoder_file: str | Path, decoder_file: str | Path | None = None) -> None:
    """Load official TAESD files into ``model`` in place, strictly.

    Every key of each file must exist in the model with the same shape, and every model key of a
    loaded part (``encoder``, and ``decoder`` when its file is given) must come from the file.
    Without ``decoder_file`` the decoder keeps its initial weights (the teacher only encodes).
    """
    target = model.state_dict()
    files = {"encoder": Path(encoder_file)} | ({"decoder": Path(decoder_file)} if decoder_file else {})
    for part, path in files.items():
        state = official_to_diffusers(_read(path), part)
        expected = {k for k in target if k.startswith(f"{part}.")}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        mismatched = sorted(k for k in set(state) & expected if state[k].shape != target[k].shape)
        if missing or unexpected or mismatched:
            raise CheckpointError(
                f"{path}: does not fit the TAESD {part}: missing {missing[:4]}, "
                f"unexpected {unexpected[:4]}, shape mismatch {mismatched[:4]}"
            )
        with torch.no_grad():
            for key, value in state.items():
                target[key].copy_(value)


def load_taesdxl(source: str | None = None, *, model: str = "sdxl-turbo") -> AutoencoderTiny:
    """TAESDXL with trained weights.

    Args:
        source: an official ``taesdxl_encoder.safetensors`` file (its ``taesdxl_decoder`` sibling is
            loaded too when present); a folder holding those files or a diffusers ``AutoencoderTiny``
            folder; or a Hugging Face id (default ``madebyollin/taesdxl``).
        model: the preset name, for messages.
    """
    diffusers = require_extra("diffusers", "the SDXL-Turbo teacher")

    source = source or TAESDXL_ID
    path = Path(source).expanduser()
    if path.is_dir() and (path / ENCODER_FILE).is_file():
        path = path / ENCODER_FILE
    if path.is_file():
        if path.suffix != ".safetensors":
            raise InputError(f"{model}: tiny VAE weights {path} must be a .safetensors file")
        sibling = path.with_name(path.name.replace("encoder", "decoder"))
        vae = cast("AutoencoderTiny", build_vae("tiny"))  # what kind "tiny" builds
        load_official(vae, path, sibling if sibling != path and sibling.is_file() else None)
        return vae.eval()
    folder = resolve_pretrained(
        source,
        model=f"{model} (tiny VAE)",
        allow_patterns=["config.json", "diffusion_pytorch_model.safetensors"],
        how_to_supply=f"Supply them with --tiny-vae-weights PATH (the official {ENCODER_FILE}, or a diffusers folder).",
    )
    vae, info = diffusers.AutoencoderTiny.from_pretrained(folder, output_loading_info=True)
    problems = {kind: list(keys)[:4] for kind, keys in info.items() if keys and kind != "error_msgs"}
    if problems:
        raise CheckpointError(f"{model}: {folder} does not fit AutoencoderTiny: {problems}")
    return vae.eval()
