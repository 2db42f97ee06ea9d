"""Export a DINOv2-based extractor (student, distilldift-*, dinov2-*) to ONNX at a fixed input size,
check it against PyTorch, time both.

    from semcorr import build_extractor
    from semcorr.export import export_onnx, format_report

    student = build_extractor("student", adapter="run/adapter", device="cpu")
    report = export_onnx(student, "student.onnx", size=434)
    print(format_report(report))

The graph maps ``pixels`` (B, 3, S, S) float32, RGB in [0, 1] (the input canvas of
:meth:`Extractor.preprocess`) to ``features`` (B, C, S/14, S/14) float32, L2-normalised over C:
what :meth:`Extractor.extract` returns. ImageNet normalisation is inside the graph; resizing an
image onto the S x S canvas (bilinear, antialiased) is not. B and S are fixed at export time.
A student's LoRA adapter is merged into the backbone first (on a copy; the extractor given is
left as it is).

The exporter is ``torch.onnx.export(dynamo=True)`` (``torch.export`` then onnxscript) at opset
:data:`ONNX_OPSET`; the TorchScript exporter cannot translate the antialiased bicubic resize of
DINOv2's position embeddings. The file is written next to ``path`` under a temporary name, checked
with onnxruntime against PyTorch on the same pixels (max abs difference of the features at most
``tolerance``, else :class:`~semcorr.errors.ExportError` and no file), timed, and only then renamed
to ``path``. The settings are stored in the model's ``metadata_props``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ExportError, InputError
from ..extras import require_extra
from ..features.backbones.dinov2 import IMAGENET_MEAN, IMAGENET_STD, DinoV2Extractor
from ..features.base import Extractor
from ..features.distill.student import StudentExtractor
from ..fileio import atomic_file, check_output_file
from ..geometry import ImageGeometry, resize_onto_canvas
from ..images import ImageInput, load_image
from ..runtime import cpu_name, load_average
from . import ONNX_OPSET

# Above this many weight bytes the weights go into PATH.data next to PATH (protobuf's 2 GB limit).
_EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass(frozen=True)
class ExportReport:
    """What was exported, how well it matches PyTorch, and how fast each runs.

    Attributes:
        path: the ONNX file. ``data_path``: its external weights file, or ``None`` (weights inside).
        model: extractor name. ``adapter``: the adapter file the student loaded, or ``None``.
        lora_merged: a student's LoRA (loaded or in memory) was merged into the exported weights.
        input_size: S of the fixed (batch_size, 3, S, S) input. ``grid``: (h, w). ``channels``: C.
        opset: ONNX opset of the default domain. ``exporter``: which exporter wrote the graph.
        export_s: seconds to export and write the file. ``file_mb``: size of the file(s) in MiB.
        max_abs_diff: largest |onnxruntime - PyTorch| over the features; ``tolerance`` its bound.
        check_input: ``random pixels`` or the image(s) the check ran on.
        onnxruntime_s_per_image, torch_s_per_image: median seconds per image (fp32, CPU).
        runs, warmup: timed and untimed calls of each. ``threads``: CPU threads given to each.
        machine: CPU name, versions, load average.
    """

    path: Path
    data_path: Path | None
    model: str
    adapter: str | None
    lora_merged: bool
    random_weights: bool
    input_size: int
    batch_size: int
    grid: tuple[int, int]
    channels: int
    opset: int
    exporter: str
    export_s: float
    file_mb: float
    max_abs_diff: float
    tolerance: float
    check_input: str
    onnxruntime_s_per_image: float | None
    torch_s_per_image: float | None
    runs: int
    warmup: int
    threads: int
    machine: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"], out["data_path"] = str(self.path), self.data_path and str(self.data_path)
        return out


class NormalisedFeatures(nn.Module):
    """(B, 3, S, S) pixels in [0, 1] -> (B, C, h, w) L2-normalised features of ``extractor`` (fp32)."""

    def __init__(self, extractor: Extractor) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, pixels: Tensor) -> Tensor:
        return F.normalize(self.extractor(pixels).float(), dim=1)


def require_onnx() -> tuple[Any, Any]:
    """Import ``onnx`` and ``onnxruntime`` (and check onnxscript, which the exporter needs).

    Raises:
        MissingExtraError: naming the missing package and the extra that installs it.
    """
    onnx, onnxruntime, _ = (require_extra(name, "ONNX export") for name in ("onnx", "onnxruntime", "onnxscript"))
    return onnx, onnxruntime


def _prepare(extractor: Extractor) -> tuple[NormalisedFeatures, bool]:
    """The module to export: on CPU, in eval mode, a student's LoRA merged into the backbone; a copy
    where that would change ``extractor``. Also whether a LoRA was merged (a student)."""
    if not isinstance(extractor, DinoV2Extractor):
        raise InputError(
            f"{extractor.name}: ONNX export supports the student, distilldift-* and dinov2-* presets "
            f"(got a {type(extractor).__name__}); pick one of those with --model"
        )
    has_lora = hasattr(extractor, "merge")
    needs_merge = has_lora and not getattr(extractor, "merged", True)
    if needs_merge or extractor.device.type != "cpu" or extractor.training:
        extractor = copy.deepcopy(extractor).cpu().eval()
        if needs_merge:
            assert isinstance(extractor, StudentExtractor)  # the extractor with merge()
            extractor.merge()
    return NormalisedFeatures(extractor).eval(), has_lora


def _check_pixels(
    extractor: Extractor, size: int, batch_size: int, images: Sequence[ImageInput] | None, seed: int
) -> tuple[Tensor, str]:
    """(batch_size, 3, size, size) pixels in [0, 1] for the parity check, and what they are."""
    if images is None:
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(batch_size, 3, size, size, generator=generator), "random pixels"
    if len(images) != batch_size:
        raise InputError(f"the parity check needs {batch_size} image(s) (the batch size), got {len(images)}")
    mode = extractor.config.resize_mode
    canvases = []
    for image in images:
        loaded = load_image(image)
        canvases.append(resize_onto_canvas(loaded, ImageGeometry.fit((loaded.shape[-2], loaded.shape[-1]), size, mode)))
    names = [str(image) if isinstance(image, (str, Path)) else type(image).__name__ for image in images]
    return torch.stack(canvases), ", ".join(names)


def median_seconds(calls: dict[str, Callable[[], Any]], runs: int, warmup: int) -> dict[str, float]:
    """Median wall time of each call over ``runs`` timed calls, after ``warmup`` untimed ones each.

    The calls are timed round-robin, so that load from other processes on a shared machine falls
    on each alike.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _export_program(module: NormalisedFeatures, pixels: Tensor, opset: int) -> Any:
    """torch.onnx's dynamo exporter on ``module`` at the fixed shape of ``pixels``; quiet."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return torch.onnx.export(
                module,
                (pixels,),
                dynamo=True,
                opset_version=opset,
                verbose=False,
                input_names=["pixels"],
                output_names=["features"],
                external_data=False,
            )
    except Exception as error:  # the exporter raises many types; keep the first line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(
            f"{module.extractor.name}: torch.onnx.export failed ({first}); rerun with --debug for the traceback"
        ) from error
    finally:
        registration.setLevel(level)


def _metadata(
    module: NormalisedFeatures,
    adapter: str | None,
    lora_merged: bool,
    size: int,
    batch_size: int,
    grid: tuple[int, int],
    channels: int,
    opset: int,
) -> dict[str, str]:
    """The ``semcorr.*`` entries of the model's metadata_props: what goes in, what comes out."""
    extractor = module.extractor
    return {
        "semcorr.model": extractor.name,
        "semcorr.adapter": adapter or "",
        "semcorr.lora_merged": str(lora_merged),
        "semcorr.random_weights": str(extractor.random_weights),
        "semcorr.input_size": str(size),
        "semcorr.batch_size": str(batch_size),
        "semcorr.grid": f"{grid[0]}x{grid[1]}",
        "semcorr.channels": str(channels),
        "semcorr.stride": str(extractor.stride),
        "semcorr.opset": str(opset),
        "semcorr.input": f"pixels: float32 ({batch_size}, 3, {size}, {size}), RGB in [0, 1]: the image resized onto "
        f"the {size}x{size} canvas ({extractor.config.resize_mode}, bilinear, antialiased)",
        "semcorr.normalisation": f"ImageNet mean {list(IMAGENET_MEAN)}, std {list(IMAGENET_STD)} applied inside the "
        "graph; output L2-normalised over channels",
        "semcorr.output": f"features: float32 ({batch_size}, {channels}, {grid[0]}, {grid[1]}), "
        "L2-normalised over channels (as Extractor.extract)",
        "semcorr.torch_version": torch.__version__,
    }


def _save(program: Any, temporary: Path, path: Path, weight_bytes: int) -> Path | None:
    """Write the ONNX file of ``path`` to ``temporary``; returns the external data file or None."""
    from onnxscript import ir

    if weight_bytes <= _EXTERNAL_DATA_BYTES:
        ir.save(program.model, temporary)
        return None
    data = path.with_name(path.name + ".data")  # referenced by this relative name from the final file
    ir.save(program.model, temporary, external_data=data.name)
    return data


def _check_and_time(
    ort: Any,
    onnx_file: Path,
    module: NormalisedFeatures,
    pixels: Tensor,
    expected: Tensor,
    tolerance: float,
    runs: int,
    warmup: int,
    threads: int,
) -> tuple[float, float | None, float | None, list[float] | None]:
    """Run ``onnx_file`` with onnxruntime on ``pixels`` (B, 3, S, S) and compare with ``expected``
    (B, C, h, w), PyTorch's features; then time both. Returns the max abs difference, seconds per
    image of onnxruntime and of PyTorch (``None`` when ``runs == 0``), and the load average before timing.

    Raises:
        ExportError: a different shape, or a difference above ``tolerance``.
    """
    name = module.extractor.name
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    feed = {"pixels": pixels.numpy()}
    actual = torch.from_numpy(session.run(["features"], feed)[0])
    if actual.shape != expected.shape:
        raise ExportError(
            f"{name}: onnxruntime gave features of shape {tuple(actual.shape)}, PyTorch {tuple(expected.shape)}"
        )
    max_abs_diff = (actual - expected).abs().max().item()
    if not max_abs_diff <= tolerance:
        raise ExportError(
            f"{name}: onnxruntime and PyTorch features differ by up to {max_abs_diff:.2e} "
            f"(> {tolerance:.0e}); the file was not written"
        )
    if not runs:
        return max_abs_diff, None, None, None
    load_before = load_average()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            medians = median_seconds(
                {"onnxruntime": lambda: session.run(["features"], feed), "torch": lambda: module(pixels)}, runs, warmup
            )
    finally:
        torch.set_num_threads(previous)
    batch = pixels.shape[0]
    return max_abs_diff, medians["onnxruntime"] / batch, medians["torch"] / batch, load_before


def export_onnx(
    extractor: Extractor,
    path: str | os.PathLike,
    *,
    size: int | None = None,
    batch_size: int = 1,
    opset: int = ONNX_OPSET,
    tolerance: float = 1e-4,
    images: Sequence[ImageInput] | None = None,
    runs: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    seed: int = 0,
) -> ExportReport:
    """Export ``extractor`` (the student, a distilldift-* or dinov2-* preset) to ONNX with a fixed input size.

    Args:
        extractor: the model; a student's adapter is merged (on a copy). It may live on any device;
            the export, the check and the timing run on CPU.
        path: the ``.onnx`` file to write (replaced atomically once the check passes).
        size: input canvas side S, a multiple of 14 (default: the extractor's input size).
        batch_size: the fixed batch size B of the (B, 3, S, S) input.
        opset: ONNX opset (default :data:`ONNX_OPSET`).
        tolerance: largest allowed max abs difference of the features, onnxruntime vs PyTorch.
        images: B images for the check (resized as ``extract`` does); ``None``: seeded random pixels.
        runs: timed (round-robin) calls of each runtime; ``runs=0`` skips the timing.
        warmup: untimed calls of each runtime before them.
        threads: CPU threads for onnxruntime and torch (default: torch's current setting).
        seed: seed of the random check pixels.
    Returns:
        an :class:`ExportReport`.
    Raises:
        InputError: unsupported extractor, bad size or settings, or onnx/onnxruntime missing.
        ExportError: the exporter failed, or onnxruntime's features differ by more than ``tolerance``.
    """
    onnx, ort = require_onnx()
    size = size or extractor.config.input_size
    if size < extractor.stride or size % extractor.stride:
        raise InputError(f"--size must be a positive multiple of {extractor.stride} (e.g. 434 or 448), got {size}")
    if batch_size < 1 or runs < 0 or warmup < 0 or tolerance <= 0:
        raise InputError(
            f"need batch_size >= 1, runs >= 0, warmup >= 0, tolerance > 0; got "
            f"{batch_size}, {runs}, {warmup}, {tolerance}"
        )
    path = check_output_file(path, suffixes=(".onnx",), what="ONNX model")
    module, lora_merged = _prepare(extractor)
    adapter = getattr(extractor.config, "adapter", None)
    threads = threads or torch.get_num_threads()
    pixels, check_input = _check_pixels(extractor, size, batch_size, images, seed)
    grid = extractor.grid_size(size)

    with torch.inference_mode():
        expected = module(pixels)
    start = time.perf_counter()
    program = _export_program(module, pixels, opset)
    channels = expected.shape[1]
    if tuple(expected.shape) != (batch_size, channels, *grid):
        raise ExportError(f"{extractor.name}: features of shape {tuple(expected.shape)}, expected a {grid} grid")
    opset_used = next(version for domain, version in program.model.opset_imports.items() if domain == "")
    metadata = _metadata(module, adapter, lora_merged, size, batch_size, grid, channels, opset_used)
    program.model.metadata_props.update(metadata)
    weight_bytes = sum(t.numel() * t.element_size() for t in module.parameters())
    data_path: Path | None = None
    try:
        with atomic_file(path) as temporary:  # renamed to path only once the check has passed
            data_path = _save(program, temporary, path, weight_bytes)
            export_s = time.perf_counter() - start
            max_abs_diff, ort_s, torch_s, load_before = _check_and_time(
                ort, temporary, module, pixels, expected, tolerance, runs, warmup, threads
            )
    except BaseException:
        if data_path is not None:
            data_path.unlink(missing_ok=True)
        raise
    file_bytes = path.stat().st_size + (data_path.stat().st_size if data_path is not None else 0)
    machine = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "load_average_before": load_before,
        "load_average": load_average(),
    }
    return ExportReport(
        path=path,
        data_path=data_path,
        model=extractor.name,
        adapter=adapter,
        lora_merged=lora_merged,
        random_weights=extractor.random_weights,
        input_size=size,
        batch_size=batch_size,
        grid=grid,
        channels=channels,
        opset=opset_used,
        exporter=f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        export_s=round(export_s, 2),
        file_mb=round(file_bytes / 2**20, 1),
        max_abs_diff=max_abs_diff,
        tolerance=tolerance,
        check_input=check_input,
        onnxruntime_s_per_image=ort_s,
        torch_s_per_image=torch_s,
        runs=runs,
        warmup=warmup,
        threads=threads,
        machine=machine,
    )


def format_report(report: ExportReport) -> str:
    """The report as a few lines: the file, the check, and a small timing table."""
    label = report.model + (" (random weights)" if report.random_weights else "")
    weights = f", weights in {report.data_path}" if report.data_path else ""
    shape = f"({report.batch_size}, 3, {report.input_size}, {report.input_size})"
    out_shape = f"({report.batch_size}, {report.channels}, {report.grid[0]}, {report.grid[1]})"
    lines = [
        (
            f"wrote {report.path} ({report.file_mb} MiB{weights}) in {report.export_s:.1f} s: {label}, input {shape} "
            f"-> features {out_shape}, opset {report.opset}, {report.exporter}"
        ),
        (
            f"check on {report.check_input}: max |onnxruntime - PyTorch| = {report.max_abs_diff:.2e} "
            f"(<= {report.tolerance:.0e})"
        ),
    ]
    if report.onnxruntime_s_per_image is not None and report.torch_s_per_image is not None:
        rows = [
            ("onnxruntime " + report.machine["onnxruntime"], report.onnxruntime_s_per_image),
            ("PyTorch " + report.machine["torch"] + " fp32", report.torch_s_per_image),
        ]
        width = max(len(name) for name, _ in rows)
        lines.append(f"{'runtime':<{width}}  s/image   images/s  x PyTorch")
        lines += [
            f"{name:<{width}}  {seconds:<8.4g}  {1 / seconds:8.4g}  {report.torch_s_per_image / seconds:9.2f}"
            for name, seconds in rows
        ]
        lines.append(
            f"CPU: {report.machine['cpu']}, {report.threads} thread(s); median of {report.runs} runs each "
            f"(round-robin) after {report.warmup} warm-up, batch {report.batch_size}; load average "
            f"{report.machine['load_average_before']} -> {report.machine['load_average']}"
        )
    return "\n".join(lines)
