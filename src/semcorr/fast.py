"""Choosing the fast settings for the hardware at hand (nothing here runs at import).

Measured on the development CPU (AMD EPYC with AVX-512 BF16, 2 cores), DINOv2-B/14 at 434 px,
quiet machine: bf16 autocast runs 1.56x the images/s of fp32 at batch 1 and 1.69x at batch 8
(see the README's "Speed" section), while casting the weights themselves to bf16 is slower than
autocast, and ``torch.compile`` gained 8 % after a first compile of about 100 s (so it is opt-in).
Hence, for throughput work such as video: bf16 autocast where the hardware computes bf16
natively, and fp32 elsewhere (emulated bf16 is slower than fp32).
"""

from __future__ import annotations

import functools

import torch

from .features.base import Extractor, Precision


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 matrix products natively (CUDA compute capability >= 8.0;
    x86 CPUs with AVX-512 BF16 or AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


def fast_precision(device: torch.device | str) -> Precision:
    """``bf16`` where :func:`native_bf16`, else ``fp16`` on CUDA, else ``fp32``."""
    device = torch.device(device)
    if native_bf16(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def compile_extractor(extractor: Extractor, *, mode: str | None = None) -> Extractor:
    """``torch.compile`` the extractor's forward in place (``extract()`` then runs the compiled
    model; the first calls, and the first call at each new batch shape, compile). Returns it."""
    extractor.compile(mode=mode)
    return extractor
