"""Shared test helpers: the tiny real architectures every test builds, and the two-process launcher.

Tiny models are the real transformers / diffusers classes at toy sizes with random weights. The
tokenizer is a real CLIP BPE tokenizer read from vocab/merges files written here.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
)

from semcorr.features import EnsembleTeacher, TeacherConfig
from semcorr.features.backbones.sdxl.parts import SDXL_SCHEDULE, SdxlComponents, alphas_cumprod

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TRAIN_WORKER = TESTS / "distill_worker.py"


# --- DINOv2 ----------------------------------------------------------------------------------


def tiny_backbone(registers=True, layers=2, swiglu=False, seed=0, width=32):
    """A tiny transformers DINOv2 (``width`` 32, patch 14), with or without registers."""
    torch.manual_seed(seed)
    settings = dict(
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        patch_size=14,
        image_size=518,
        use_swiglu_ffn=swiglu,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
    )
    if registers:
        return Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=4, **settings)).eval()
    return Dinov2Model(Dinov2Config(**settings)).eval()


# --- SDXL-Turbo and the ensemble teacher ------------------------------------------------------


WORDS = ["a", "photo", "of", "cat", "dog", "car", "bike", "duck", "bottle"]
TEXT_HIDDEN = (16, 24)  # CLIP-L-like, bigG-like
POOLED = 20
TIME_DIM = 8


def write_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """A CLIP tokenizer from vocab.json / merges.txt files written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = sorted(set("".join(WORDS)) | set("!"))
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(letters)})
    merges = []
    for word in WORDS:  # merge each word left to right into a whole-word token
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            vocab.setdefault(pieces[0], len(vocab))
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 16, "pad_token": pad_token, "tokenizer_class": "CLIPTokenizer"})
    )
    return CLIPTokenizer.from_pretrained(folder)


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(16, 32),
        transformer_layers_per_block=(1, 2),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        attention_head_dim=(2, 4),
        cross_attention_dim=sum(TEXT_HIDDEN),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_DIM,
        projection_class_embeddings_input_dim=6 * TIME_DIM + POOLED,
        norm_num_groups=8,
    ).eval()


def tiny_vae(kind: str = "full", seed: int = 0):
    torch.manual_seed(seed)
    if kind == "tiny":
        return AutoencoderTiny(
            encoder_block_out_channels=(8, 8),
            decoder_block_out_channels=(8, 8),
            num_encoder_blocks=(1, 1),
            num_decoder_blocks=(1, 1),
        ).eval()
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        scaling_factor=0.13025,
    ).eval()


def tiny_text_encoders(vocab_size: int, seed: int = 0):
    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab_size,
        max_position_embeddings=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
    )
    one = CLIPTextModel(
        CLIPTextConfig(hidden_size=TEXT_HIDDEN[0], projection_dim=POOLED, hidden_act="quick_gelu", **common)
    ).eval()
    two = CLIPTextModelWithProjection(
        CLIPTextConfig(hidden_size=TEXT_HIDDEN[1], projection_dim=POOLED, hidden_act="gelu", **common)
    ).eval()
    return one, two


def tiny_components(folder: Path, vae: str = "full", seed: int = 0) -> SdxlComponents:
    """Tiny SDXL parts; tokenizer files are written under ``folder``."""
    tokenizer = write_tokenizer(folder / "tokenizer")
    tokenizer_2 = write_tokenizer(folder / "tokenizer_2", pad_token="!")
    one, two = tiny_text_encoders(len(tokenizer), seed)
    return SdxlComponents(
        unet=tiny_unet(seed),
        vae=tiny_vae(vae, seed),
        text_encoder=one,
        text_encoder_2=two,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        alphas_cumprod=alphas_cumprod(SDXL_SCHEDULE),
    )


def tiny_dino(seed: int = 0):
    """A tiny DINOv2-with-registers backbone (width 24, patch 14)."""
    return tiny_backbone(seed=seed, width=24)


def tiny_teacher(folder: Path, vae: str = "full", seed: int = 0, **overrides):
    """The ensemble teacher with tiny members: SDXL at 32 (grid 8) and DINOv2 at 112 (grid 8)."""
    config = TeacherConfig(**{"input_size": 112, "sdxl_input_size": 32, **overrides})
    return EnsembleTeacher(
        config,
        random_weights=True,
        name="tiny-teacher",
        sdxl_components=tiny_components(folder, vae, seed),
        dino_backbone=tiny_dino(seed),
    )


# --- several processes -------------------------------------------------------------------------


def launch_two_ranks(*worker_args: object, timeout: float = 150) -> subprocess.CompletedProcess:
    """Run the training worker (``distill_worker.py``) as two ranks under ``torchrun`` on this machine."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(TRAIN_WORKER),
            *map(str, worker_args),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- semcorr app ------------------------------------------------------------------------------

# A crop of scikit-image's cat and the same scene shifted: a point (x, y) of A is at (x + dx, y + dy) in B.
SHIFT = (24, 16)


def shifted_pair(folder: Path, size: tuple[int, int] = (256, 192)) -> tuple[Path, Path]:
    """Two PNGs in ``folder``: a (width, height) crop of skimage's ``chelsea`` and the crop whose
    content sits :data:`SHIFT` further right and down."""
    import skimage.data
    from PIL import Image

    scene = skimage.data.chelsea()
    (width, height), (dx, dy), (x0, y0) = size, SHIFT, (120, 100)
    paths = folder / "cat_a.png", folder / "cat_b.png"
    Image.fromarray(scene[y0 : y0 + height, x0 : x0 + width]).save(paths[0])
    Image.fromarray(scene[y0 - dy : y0 - dy + height, x0 - dx : x0 - dx + width]).save(paths[1])
    return paths


@contextlib.contextmanager
def running_app(model: str = "baseline", **settings):
    """A ``semcorr app`` server on a free port of 127.0.0.1, serving from a thread; closed afterwards."""
    from semcorr.app import AppSettings, create_server

    server = create_server(model, settings=AppSettings(port=0, **settings), log=lambda line: None)
    try:
        yield server.start()
    finally:
        server.close()
