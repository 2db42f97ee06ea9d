"""Benchmark of the full-size SDXL-Turbo teacher: seconds per image and cache bytes per image.

    semcorr bench-sdxl                                   # fp32 and bf16
    semcorr bench-sdxl --runs 5 --precision bf16
    semcorr bench-sdxl --flops-only                      # FLOPs of the trunk vs the whole UNet

Random weights (timing does not depend on them; the real weights cannot be downloaded here). Each
row builds the released architecture with the full VAE, warms up once, times ``--runs`` extractions
of one 640x480 image (a COCO-sized photo), then times each part: the SDXL VAE's and TAESDXL's encode
at 980x980 and one pass of the UNet trunk. Medians are reported with the load average of the
machine before and after, since a shared machine's other work slows every figure. Text embeddings
are computed once per prompt and kept, so they are not part of the per-image time.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..errors import InputError
from ..extras import require_extra
from ..features.backbones.sdxl.extractor import SdxlTurboExtractor
from ..features.backbones.sdxl.parts import SDXL_UNET_CONFIG, build_vae
from ..features.backbones.sdxl.unet import UnetTrunk
from ..features.config import SdxlTurboConfig
from ..features.registry import build_extractor
from ..geometry import ImageGeometry
from ..store.folder import FeatureFolder


def unet_flops(latent: int = 122) -> dict[str, float]:
    """TFLOPs of one pass of the released SDXL UNet and of the teacher's trunk (counted on meta)."""
    diffusers = require_extra("diffusers", "the SDXL-Turbo teacher")
    UNet2DConditionModel = diffusers.UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET_CONFIG)
        sample = torch.empty(1, 4, latent, latent)
        hidden, pooled, time_ids = torch.empty(1, 77, 2048), torch.empty(1, 1280), torch.empty(1, 6)
        steps = torch.full((1,), 51)
        counts = {}
        with FlopCounterMode(display=False) as counter:
            unet(sample, steps, hidden, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids})
        counts["unet"] = counter.get_total_flops() / 1e12
        trunk = UnetTrunk(unet)
        with FlopCounterMode(display=False) as counter:
            trunk(sample, steps, hidden, pooled, time_ids)
        counts["trunk"] = counter.get_total_flops() / 1e12
    return counts


def cache_bytes_per_image(channels: int = 2048, grid: int = 31) -> int:
    """Size on disk of one cache entry of a (channels, grid, grid) teacher map."""
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureFolder.create(folder, {"model": "bench"})
        return cache.put(
            "train2017/000000000009.jpg", torch.zeros(channels, grid, grid), ImageGeometry.fit((480, 640), 434)
        )


def _median_seconds(step: Callable[[], Any], runs: int) -> tuple[float, float, float]:
    """(median, min, max) seconds of ``runs`` calls of ``step``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def time_precision(precision: str, runs: int, component_runs: int, timesteps: int, size: int = 980) -> dict[str, Any]:
    """Build the full-size extractor (full VAE) once and time it end to end and by parts."""
    start = time.perf_counter()
    extractor = build_extractor(
        "sdxl-turbo",
        random_weights=True,
        device="cpu",
        precision=precision,
        timesteps=(51, 101, 151, 201)[:timesteps],
        input_size=size,
    )
    assert isinstance(extractor, SdxlTurboExtractor)  # the "sdxl-turbo" preset builds one
    built = time.perf_counter() - start
    tiny = torch.nn.Module.to(build_vae("tiny").eval().requires_grad_(False), next(extractor.vae.parameters()).dtype)
    image, pixels = torch.rand(3, 480, 640), torch.rand(1, 3, size, size)
    load_before = os.getloadavg()[0]
    extractor.extract(image)  # warm-up, and the prompt's text embeddings (kept)
    end_to_end = _median_seconds(lambda: extractor.extract(image), runs) if runs else None
    hidden, pooled = extractor.text_embeddings([extractor.prompt_for(None)])
    dtype = next(extractor.trunk.parameters()).dtype
    side = extractor.sizes()["latent"]
    latents, steps = torch.randn(1, 4, side, side, dtype=dtype), torch.full((1,), 51)
    with torch.inference_mode(), extractor._autocast():
        encode = _median_seconds(lambda: extractor.encode(pixels), component_runs)
        encode_tiny = _median_seconds(lambda: tiny.encode((pixels * 2 - 1).to(dtype)), component_runs)
        unet_pass = _median_seconds(
            lambda: extractor.trunk(latents, steps, hidden.to(dtype), pooled.to(dtype), extractor.time_ids(1, size)),
            component_runs,
        )
    full = end_to_end[0] if end_to_end else encode[0] + timesteps * unet_pass[0]
    row = dict(
        precision=precision,
        timesteps=timesteps,
        end_to_end=end_to_end,
        full=full,
        tiny=full - encode[0] + encode_tiny[0],
        encode=encode[0],
        encode_tiny=encode_tiny[0],
        unet_pass=unet_pass[0],
        build=built,
        load=(load_before, os.getloadavg()[0]),
    )
    return row


def run_sdxl_bench(
    *,
    precisions: Sequence[str] = ("fp32", "bf16"),
    runs: int = 3,
    component_runs: int = 3,
    timesteps: int = 4,
    input_size: int = 980,
    flops_only: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Count the UNet's FLOPs and a cache entry's bytes, then time each precision; ``log`` gets
    the report line by line (a markdown table), as the rows are measured. Returns the rows."""
    if runs < 0 or component_runs < 1:
        raise InputError(f"need --runs >= 0 and --component-runs >= 1; got {runs} and {component_runs}")
    SdxlTurboConfig(input_size=input_size)  # checks the size before anything is built
    flops = unet_flops()
    log(
        f"UNet pass at latent 122x122: whole UNet {flops['unet']:.2f} TFLOP, teacher trunk {flops['trunk']:.2f} "
        f"TFLOP ({100 * (1 - flops['trunk'] / flops['unet']):.0f}% skipped)"
    )
    entry = cache_bytes_per_image()
    log(
        f"cache entry of the teacher (2048 x 31 x 31 fp16, safetensors): {entry:,} bytes per image "
        f"({entry / 1e6:.2f} MB; 12,000 COCO images: {12000 * entry / 1e9:.1f} GB)"
    )
    if flops_only:
        return []
    log(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; random weights; "
        f"one 640x480 image -> {input_size}x{input_size} canvas; medians of {runs} end-to-end runs (after a "
        f"warm-up) and of {component_runs} runs of each part; TAESDXL s/image = full-VAE s/image - VAE encode + "
        "TAESDXL encode"
    )
    header = (
        "| precision | s/image, SDXL VAE | min-max | s/image, TAESDXL | VAE encode s | TAESDXL encode s "
        "| UNet trunk pass s | build s | load avg before/after |"
    )
    log(header)
    log("|" + "---|" * (header.count("|") - 1))
    rows = []
    for precision in precisions:
        row = time_precision(precision, runs, component_runs, timesteps, input_size)
        gc.collect()  # the last precision's 10 GB model, before the next is built
        spread = f"{row['end_to_end'][1]:.1f}-{row['end_to_end'][2]:.1f}" if row["end_to_end"] else "estimated"
        log(
            f"| {row['precision']} | {row['full']:.1f} | {spread} | {row['tiny']:.1f} | {row['encode']:.2f} | "
            f"{row['encode_tiny']:.2f} | {row['unet_pass']:.1f} | {row['build']:.0f} | "
            f"{row['load'][0]:.1f} / {row['load'][1]:.1f} |"
        )
        rows.append(row)
    return rows
