"""Facts about where semcorr runs: the device, this process's rank, the CPU, native bf16, threads.

Nothing here runs at import. Device and rank follow the launchers' conventions: ``torchrun`` and
``accelerate launch`` set ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; each process takes the GPU
``cuda:LOCAL_RANK``.

Precision for throughput work (measured on the development CPU, an AMD EPYC with AVX-512 BF16,
DINOv2-B/14 at 434 px, quiet machine): bf16 autocast ran 1.56x the images/s of fp32 at batch 1 and
1.69x at batch 8, while casting the weights to bf16 was slower than autocast, and ``torch.compile``
gained 8 % after a first compile of about 100 s (so it is opt-in). Hence :func:`fast_precision`:
bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere (emulated bf16 is slower).
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

import torch

from .errors import InputError
from .settings import Precision


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device for ``device``.

    ``None`` or ``"auto"``: CUDA when available, else the CPU. CUDA without an index (``auto``
    included) is this process's GPU, ``cuda:LOCAL_RANK`` (``LOCAL_RANK`` from torchrun / accelerate,
    else 0).
    """
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"device {device!r} is not a torch device ({error})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but CUDA is not available on this machine")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank())
    return resolved


def local_rank() -> int:
    """``LOCAL_RANK`` (this process's index on its machine under torchrun / accelerate), else 0."""
    try:
        return int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        raise InputError(f"LOCAL_RANK must be an integer, got {os.environ.get('LOCAL_RANK')!r}") from None


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size) from the arguments, else from ``RANK`` / ``WORLD_SIZE`` (torchrun,
    accelerate), else (0, 1)."""
    try:
        rank = int(os.environ.get("RANK", 0)) if rank is None else rank
        world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    except ValueError:
        raise InputError(
            f"RANK / WORLD_SIZE must be integers, got {os.environ.get('RANK')!r} / {os.environ.get('WORLD_SIZE')!r}"
        ) from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not in [0, world size {world_size})")
    return rank, world_size


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of ``/proc/cpuinfo`` (empty where there is none)."""
    entries: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                entries[key.strip()] = value.strip()
    except OSError:
        pass
    return entries


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    return _cpuinfo().get("model name") or platform.processor() or "unknown"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where unknown)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 matrix products natively (CUDA compute capability >= 8.0;
    x86 CPUs with AVX-512 BF16 or AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


def fast_precision(device: torch.device | str) -> Precision:
    """``bf16`` where :func:`native_bf16`, else ``fp16`` on CUDA, else ``fp32``."""
    device = torch.device(device)
    if native_bf16(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when asked (``None``: leave torch's choice; never at import)."""
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system does not say)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info(device: torch.device) -> dict[str, Any]:
    """Device, CPU or GPU name, torch version, threads, CPU count, platform and load average."""
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["cpu"] = cpu_name()
    if (load := load_average()) is not None:
        info["load_average"] = load
    return info
