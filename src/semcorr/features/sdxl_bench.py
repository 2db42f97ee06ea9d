"""Benchmark of the full-size SDXL-Turbo teacher: seconds per image and cache bytes per image.

    python -m semcorr.features.sdxl_bench                      # fp32 and bf16
    python -m semcorr.features.sdxl_bench --runs 5 --precision bf16
    python -m semcorr.features.sdxl_bench --flops-only         # FLOPs of the trunk vs the whole UNet

Random weights (timing does not depend on them; the real weights cannot be downloaded here). Each
row builds the released architecture with the full VAE, warms up once, times ``--runs`` extractions
of one 640x480 image (a COCO-sized photo), then times each part: the SDXL VAE's and TAESDXL's encode
at 980x980 and one pass of the UNet trunk. Medians are reported with the load average of the
machine before and after, since a shared machine's other work slows every figure. Text embeddings
are computed once per prompt and kept, so they are not part of the per-image time.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from typing import Any, Callable

import torch


def unet_flops(latent: int = 122) -> dict[str, float]:
    """TFLOPs of one pass of the released SDXL UNet and of the teacher's trunk (counted on meta)."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from .sdxl_parts import SDXL_UNET_CONFIG
    from .sdxl_unet import UnetTrunk

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
    from ..cache import TeacherCache

    with tempfile.TemporaryDirectory() as folder:
        cache = TeacherCache.create(folder, {"model": "bench"})
        return cache.put("train2017/000000000009.jpg", torch.zeros(channels, grid, grid), (480, 640))


def _median_seconds(step: Callable[[], Any], runs: int) -> tuple[float, float, float]:
    """(median, min, max) seconds of ``runs`` calls of ``step``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def time_precision(precision: str, runs: int, component_runs: int, timesteps: int,
                   size: int = 980) -> dict[str, Any]:
    """Build the full-size extractor (full VAE) once and time it end to end and by parts."""
    from .registry import build_extractor
    from .sdxl_parts import build_vae

    start = time.perf_counter()
    extractor = build_extractor("sdxl-turbo", random_weights=True, device="cpu", precision=precision,
                                timesteps=(51, 101, 151, 201)[:timesteps], input_size=size)
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
        unet_pass = _median_seconds(lambda: extractor.trunk(latents, steps, hidden.to(dtype), pooled.to(dtype),
                                                            extractor.time_ids(1, size)), component_runs)
    full = end_to_end[0] if end_to_end else encode[0] + timesteps * unet_pass[0]
    row = dict(precision=precision, timesteps=timesteps, end_to_end=end_to_end, full=full,
               tiny=full - encode[0] + encode_tiny[0], encode=encode[0], encode_tiny=encode_tiny[0],
               unet_pass=unet_pass[0], build=built, load=(load_before, os.getloadavg()[0]))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3,
                        help="timed end-to-end extractions per precision (median; 0: estimate from the parts)")
    parser.add_argument("--component-runs", type=int, default=3, help="timed calls of each part (median)")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--timesteps", type=int, default=4, choices=[1, 2, 3, 4], help="UNet passes per image")
    parser.add_argument("--input-size", type=int, default=980, help="canvas side (default 980: grid 31)")
    parser.add_argument("--flops-only", action="store_true", help="only count FLOPs and cache bytes")
    args = parser.parse_args(argv)

    flops = unet_flops()
    print(f"UNet pass at latent 122x122: whole UNet {flops['unet']:.2f} TFLOP, teacher trunk {flops['trunk']:.2f} "
          f"TFLOP ({100 * (1 - flops['trunk'] / flops['unet']):.0f}% skipped)")
    entry = cache_bytes_per_image()
    print(f"cache entry of the teacher (2048 x 31 x 31 fp16, safetensors): {entry:,} bytes per image "
          f"({entry / 1e6:.2f} MB; 12,000 COCO images: {12000 * entry / 1e9:.1f} GB)")
    if args.flops_only:
        return 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; random weights; "
          f"one 640x480 image -> {args.input_size}x{args.input_size} canvas; medians of {args.runs} end-to-end runs "
          f"(after a warm-up) and of "
          f"{args.component_runs} runs of each part; TAESDXL s/image = full-VAE s/image - VAE encode + TAESDXL encode")
    header = ("| precision | s/image, SDXL VAE | min-max | s/image, TAESDXL | VAE encode s | TAESDXL encode s "
              "| UNet trunk pass s | build s | load avg before/after |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for precision in args.precision:
        row = time_precision(precision, args.runs, args.component_runs, args.timesteps, args.input_size)
        gc.collect()  # the last precision's 10 GB model, before the next is built
        spread = f"{row['end_to_end'][1]:.1f}-{row['end_to_end'][2]:.1f}" if row["end_to_end"] else "estimated"
        print(f"| {row['precision']} | {row['full']:.1f} | {spread} | {row['tiny']:.1f} | {row['encode']:.2f} | "
              f"{row['encode_tiny']:.2f} | {row['unet_pass']:.1f} | {row['build']:.0f} | "
              f"{row['load'][0]:.1f} / {row['load'][1]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
