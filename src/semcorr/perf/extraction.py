"""Cost of feature extraction: images per second, latency, peak memory and parameters per model.

    result = run_bench(BenchSettings(models=("baseline", "dinov2-b-reg"), batch_sizes=(1, 8)))
    print(format_speed_table(result))

What is timed: one call of ``extractor.extract(batch)`` on ``batch`` random images already at
the input size (so resizing is trivial), which includes the host-to-device copy, normalisation,
autocast, the model and the final L2 normalisation, and excludes file decoding. ``warmup`` calls
first, then ``repeats`` timed calls (CUDA synchronised); latency is the median time per call
(per batch) and images/s is ``batch / median``.

Peak memory, the largest over all calls: on CUDA, ``torch.cuda.max_memory_allocated`` during a
call (weights included). On CPU (Linux), the peak resident set size during a call (``VmHWM``,
reset through ``/proc/self/clear_refs`` just before it) minus the resident size just before it,
plus the bytes of the model's weights: activations, workspaces and weights. Freed heap is handed
back to the system before each call (``malloc_trim``), but memory the process still holds can be
reused unseen, so on CPU the figure is a lower bound.

The reference model (``student`` when registered, else ``dinov2-b-reg``, which costs what the
student costs once its LoRA is merged) is always measured, and each row's throughput is divided
by the reference row with the same batch size and precision (and input size when it was set
explicitly). Cost does not depend on weight values, so ``random_weights`` gives true timings.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from ..errors import InputError
from ..features.base import Extractor
from ..features.registry import PRESETS, build_extractor, get_preset
from ..runtime import load_average, machine_info, resolve_device
from ..settings import PRECISIONS, check_bool, check_int, check_text, fail


def default_reference() -> str:
    """``student`` once that preset is registered, else ``dinov2-b-reg`` (the student's cost)."""
    return "student" if "student" in PRESETS else "dinov2-b-reg"


@dataclass(frozen=True)
class BenchSettings:
    """What to measure.

    Attributes:
        models: preset names.
        input_sizes: input canvas sides; ``()`` uses each model's preset size.
        batch_sizes: images per call.
        precisions: ``fp32``, ``bf16``, ``fp16`` (autocast).
        device: ``auto``, ``cpu``, ``cuda``, ...
        repeats: timed calls per configuration (the median is reported).
        warmup: untimed calls first.
        random_weights: build untrained models (the cost is the same; no download).
        reference: model the throughputs are compared with (``None``: :func:`default_reference`).
        compile: ``torch.compile`` each extractor (its first calls then include compilation).
        seed: seed of the random input images.
        interleave: build every configuration first, then time them round-robin (robust to
            other processes' load on a shared machine; holds every model in memory at once).
        adapter: a LoRA adapter for the models that take one (``student``; merged for inference).
    """

    OPTIONS: ClassVar[dict[str, str]] = {"input_sizes": "--sizes", "precisions": "--precision"}

    models: tuple[str, ...] = ("dinov2-b-reg",)
    input_sizes: tuple[int, ...] = ()
    batch_sizes: tuple[int, ...] = (1,)
    precisions: tuple[str, ...] = ("fp32",)
    device: str = "auto"
    repeats: int = 5
    warmup: int = 2
    random_weights: bool = False
    reference: str | None = None
    compile: bool = False
    seed: int = 0
    interleave: bool = False
    adapter: str | None = None

    def __post_init__(self) -> None:
        if not self.models or not all(isinstance(m, str) and m for m in self.models):
            raise fail(self, "models", "must name at least one model preset")
        for name, minimum in (("input_sizes", 14), ("batch_sizes", 1)):
            values = getattr(self, name)
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values):
                raise fail(self, name, f"each must be an integer >= {minimum}")
        if not self.batch_sizes:
            raise fail(self, "batch_sizes", "must hold at least one batch size")
        if not self.precisions or any(p not in PRECISIONS for p in self.precisions):
            raise fail(self, "precisions", f"each must be one of {', '.join(PRECISIONS)}")
        check_int(self, "repeats", minimum=1)
        check_int(self, "warmup", minimum=0)
        for name in ("random_weights", "compile", "interleave"):
            check_bool(self, name)
        check_text(self, "reference")
        check_text(self, "adapter")
        check_int(self, "seed")


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back, so RSS deltas are honest
    except (OSError, AttributeError):
        pass


def weight_bytes(extractor: Extractor) -> int:
    return sum(t.numel() * t.element_size() for t in (*extractor.parameters(), *extractor.buffers()))


class Probe:
    """One configuration under measurement: an extractor and ``batch_size`` random square images
    at its input size. Each :meth:`call` times one ``extract`` and records its peak memory."""

    def __init__(self, extractor: Extractor, batch_size: int, *, seed: int = 0) -> None:
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        size = extractor.config.input_size
        generator = torch.Generator().manual_seed(seed)
        self.extractor, self.batch_size = extractor, batch_size
        self.images = [torch.rand(3, size, size, generator=generator) for _ in range(batch_size)]
        self.times: list[float] = []
        self.peak: int | None = 0
        self.shape: tuple[int, ...] = ()
        self.first_call_s: float | None = None

    def call(self, *, timed: bool = True) -> None:
        device = self.extractor.device
        cuda = device.type == "cuda"
        if not cuda:
            _release_memory()  # so that this call's allocations show in the RSS, not in reused heap
        rss_before = None if cuda else _rss_bytes()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        elif not _reset_peak_rss():
            rss_before = None
        start = time.perf_counter()
        fmap = self.extractor.extract(self.images)
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        self.shape = tuple(fmap.features.shape)
        del fmap
        peak: int | None
        if cuda:
            peak = torch.cuda.max_memory_allocated(device)
        else:
            high = _peak_rss_bytes()
            peak = (
                None if rss_before is None or high is None else max(0, high - rss_before) + weight_bytes(self.extractor)
            )
        self.peak = None if peak is None or self.peak is None else max(self.peak, peak)
        if self.first_call_s is None:
            self.first_call_s = elapsed
        if timed:
            self.times.append(elapsed)

    def result(self) -> dict[str, Any]:
        """Latency statistics (ms per call), ``images_per_s``, ``peak_memory_mb`` (see the module
        docstring), ``grid`` and ``channels`` of the output, ``first_call_s``."""
        median = statistics.median(self.times)
        assert self.first_call_s is not None  # set by the first call(), as median needs timed calls
        _, channels, grid_h, grid_w = self.shape
        return {
            "latency_ms": round(1000 * median, 2),
            "latency_ms_min": round(1000 * min(self.times), 2),
            "latency_ms_max": round(1000 * max(self.times), 2),
            "images_per_s": round(self.batch_size / median, 3),
            "peak_memory_mb": None if self.peak is None else round(self.peak / 2**20, 1),
            "grid": [grid_h, grid_w],
            "channels": channels,
            "first_call_s": round(self.first_call_s, 3),
        }


def measure(
    extractor: Extractor, batch_size: int, *, repeats: int = 5, warmup: int = 2, seed: int = 0
) -> dict[str, Any]:
    """Time ``extractor.extract`` on ``batch_size`` random square images at its input size:
    ``warmup`` untimed calls, then ``repeats`` timed ones. Returns :meth:`Probe.result`."""
    if repeats < 1 or warmup < 0:
        raise InputError(f"need repeats >= 1 and warmup >= 0; got {repeats} and {warmup}")
    _release_memory()
    probe = Probe(extractor, batch_size, seed=seed)
    for _ in range(warmup):
        probe.call(timed=False)
    for _ in range(repeats):
        probe.call()
    return probe.result()


def memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated during a call (weights included), largest over all calls"
    if platform.system() == "Linux":
        return (
            "peak RSS during a call (VmHWM, reset via /proc/self/clear_refs) minus RSS just before it, "
            "largest over all calls, plus the model's weight bytes (a lower bound: memory the process already "
            "holds is reused unseen)"
        )
    return "unavailable on this platform (null)"


def _cases(settings: BenchSettings, reference: str) -> list[tuple[str, int]]:
    """(model, input size) pairs, the reference first."""
    models = [reference] + [m for m in settings.models if m != reference]
    for name in models:
        get_preset(name)  # unknown names fail before anything is built
    cases = []
    for name in models:
        for size in settings.input_sizes or (get_preset(name).config.input_size,):
            cases.append((name, size))
    return cases


def run_bench(settings: BenchSettings, *, progress: bool = True) -> dict[str, Any]:
    """Measure every (model, input size, precision, batch size) of ``settings``.

    Returns:
        ``{"rows": [...], "reference": name, "machine": {...}, "settings": {...}, "notes": {...}}``;
        each row has model, input_size, batch_size, precision, compile, device, random_weights,
        params, weights_mb, the fields of :func:`measure`, build_s, reference_row and
        ratio_to_reference.
    """
    device = resolve_device(settings.device)
    reference = settings.reference or default_reference()
    cases = _cases(settings, reference)
    load_before = load_average()
    total = len(cases) * len(settings.precisions) * len(settings.batch_sizes)
    rows: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], Probe]] = []  # interleaved: measured together at the end
    with tqdm(total=total, unit="config", disable=not progress, desc="bench") as bar:
        for name, size in cases:
            for precision in settings.precisions:
                start = time.perf_counter()
                extractor = build_extractor(
                    name,
                    random_weights=settings.random_weights,
                    device=device,
                    input_size=size,
                    precision=precision,
                    **_extra(name, settings),
                )
                if settings.compile:
                    extractor.compile()
                build_s = time.perf_counter() - start
                params = sum(p.numel() for p in extractor.parameters())
                for batch in settings.batch_sizes:
                    bar.set_postfix_str(f"{name} {size}px {precision} x{batch}")
                    row = {
                        "model": name,
                        "input_size": size,
                        "batch_size": batch,
                        "precision": precision,
                        "compile": settings.compile,
                        "device": str(device),
                        "random_weights": extractor.random_weights,
                        "params": params,
                        "weights_mb": round(weight_bytes(extractor) / 2**20, 1),
                        "build_s": round(build_s, 3),
                    }
                    rows.append(row)
                    if settings.interleave:
                        pending.append((row, Probe(extractor, batch, seed=settings.seed)))
                    else:
                        row.update(
                            measure(
                                extractor, batch, repeats=settings.repeats, warmup=settings.warmup, seed=settings.seed
                            )
                        )
                        bar.update(1)
                del extractor
                _release_memory()
        if pending:
            _measure_interleaved([probe for _, probe in pending], settings.repeats, settings.warmup)
            for row, probe in pending:
                row.update(probe.result())
            bar.update(len(pending))
    _add_ratios(rows, reference, explicit_sizes=bool(settings.input_sizes))
    machine = machine_info(device)
    if load_before is not None:
        machine["load_average_before"] = load_before
    return {
        "rows": rows,
        "reference": reference,
        "machine": machine,
        "settings": dataclasses.asdict(settings),
        "notes": {
            "timing": "median wall time of extractor.extract() on a batch of random images at the input size, "
            "after warm-up; images_per_s = batch_size / median"
            + ("; configurations timed round-robin (interleaved)" if settings.interleave else ""),
            "memory": memory_method(device),
            "reference": f"ratio_to_reference = images_per_s / that of {reference} at the same batch size and "
            "precision"
            + (" (dinov2-b-reg: the student's cost with its LoRA merged)" if reference == "dinov2-b-reg" else ""),
            "weights": "random weights: timings and memory are those of the trained models, features are not"
            if settings.random_weights
            else "trained weights",
        },
    }


def _extra(name: str, settings: BenchSettings) -> dict[str, Any]:
    """Config overrides that only some presets take (an adapter for the student)."""
    fields = {f.name for f in dataclasses.fields(get_preset(name).config)}
    return {"adapter": settings.adapter} if settings.adapter and "adapter" in fields else {}


def _measure_interleaved(probes: list[Probe], repeats: int, warmup: int) -> None:
    """Warm every probe up, then time them round-robin, so that load from other processes on a
    shared machine falls on every configuration alike."""
    _release_memory()
    for probe in probes:
        for _ in range(warmup):
            probe.call(timed=False)
    for _ in range(repeats):
        for probe in probes:
            probe.call()


def _add_ratios(rows: list[dict[str, Any]], reference: str, *, explicit_sizes: bool) -> None:
    for row in rows:
        candidates = [
            r
            for r in rows
            if r["model"] == reference and r["batch_size"] == row["batch_size"] and r["precision"] == row["precision"]
        ]
        same_size = [r for r in candidates if r["input_size"] == row["input_size"]]
        chosen = (same_size if explicit_sizes and same_size else candidates)[:1]
        if chosen:
            ref = chosen[0]
            row["reference_row"] = f"{reference}@{ref['input_size']}/b{ref['batch_size']}/{ref['precision']}"
            row["ratio_to_reference"] = round(row["images_per_s"] / ref["images_per_s"], 4)
        else:
            row["reference_row"], row["ratio_to_reference"] = None, None


def format_speed_table(result: dict[str, Any]) -> str:
    """The rows as a fixed-width text table, with the reference and the measurement notes."""
    header = ("model", "size", "grid", "batch", "prec", "img/s", "latency ms", "peak MB", "params M", "x ref")
    lines = []
    for row in result["rows"]:
        lines.append(
            (
                row["model"] + (" (random)" if row["random_weights"] else ""),
                str(row["input_size"]),
                "x".join(map(str, row["grid"])),
                str(row["batch_size"]),
                row["precision"] + ("+compile" if row["compile"] else ""),
                f"{row['images_per_s']:.3f}",
                f"{row['latency_ms']:.1f}",
                "-" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}",
                f"{row['params'] / 1e6:.1f}",
                "-" if row["ratio_to_reference"] is None else f"{row['ratio_to_reference']:.3f}",
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in lines]
    machine = result["machine"]
    out.append(
        f"reference: {result['reference']}  device: {machine['device']} "
        f"({machine.get('gpu') or machine.get('cpu')}, {machine['threads']} threads)  "
        f"load average: {machine.get('load_average_before')} -> {machine.get('load_average')}"
    )
    out.extend(f"{key}: {text}" for key, text in result["notes"].items())
    return "\n".join(out)
