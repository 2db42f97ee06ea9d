"""The Ray engine: a Ray Data pipeline extracts the images into the same store the local engine fills.

    rows (key, path) --map: decode + resize (Ray tasks, one CPU each)--> canvases
         --map_batches: extract + write (an actor pool; each actor builds the model once)--> written keys

The driver lists the images, skips those whose entry is whole already, and hands the rest to Ray
Data (``from_items``). Decoding runs as Ray tasks on any CPU of the cluster; each extracting actor
builds the model once (``num_gpus``, ``cpus_per_actor``, ``concurrency`` actors) and writes its
entries itself through :class:`~semcorr.store.FeatureFolder`, so the store is exactly what the
local engine writes (``DIR`` must be on a file system every node sees). An actor runs two batches
at once: one on the device (one at a time, under a lock) while the other's entries are written,
so writing does not stall the device. Ray restarts dead actors and retries their tasks (Ray Data's
defaults); a rerun skips every whole entry, so a killed job loses at most the entries in flight.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..errors import InputError, SemcorrError
from ..extras import require_extra
from ..features.base import Extractor, Preparer, pixels_to
from ..geometry import ImageGeometry
from ..images import ImageItem
from ..store.folder import FeatureFolder, extractor_identity
from .config import ExtractSettings, ModelSpec, RaySettings
from .decode import prepare_item
from .local import pending, stop_on
from .model import shape_of
from .report import ExtractReport

PIXELS = "pixels"  # the canvas column; "pixels.<member>" for models with several canvases (the teacher)
# What a decoding task may hold: a large photo decoded to float32 (12 Mpx: 144 MB) and a block of canvases.
# Declaring it also keeps Ray Data from fusing decoding into the extracting actors (fused, an actor
# would decode its own batches on its own CPUs instead of the cluster's).
DECODE_MEMORY = 512 << 20


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a :class:`~semcorr.errors.MissingExtraError` naming the extra."""
    require_extra("ray.data", "the ray engine (Ray Data)")
    return require_extra("ray", "the ray engine")


def _columns(canvas: Any) -> dict[str, np.ndarray]:
    """A canvas (3, S, S) as the ``pixels`` column, or a dict of them as ``pixels.<member>`` columns."""
    if isinstance(canvas, dict):
        return {f"{PIXELS}.{key}": value.numpy() for key, value in canvas.items()}
    return {PIXELS: canvas.numpy()}


def decode_row(row: dict[str, Any], *, prepare: Preparer, blank: dict[str, np.ndarray]) -> dict[str, Any]:
    """Ray task: one listed image loaded and put on its canvas (zeros and an error when unreadable)."""
    item = ImageItem(row["key"], Path(row["path"]), row.get("category") or None, bool(row.get("mirrored")))
    _, canvas, geometry, error = prepare_item(item, prepare)
    out = {
        "key": row["key"],
        "path": row["path"],
        "category": row.get("category") or "",
        "error": error or "",
        "geometry": json.dumps(asdict(geometry)) if geometry is not None else "",
    }
    out.update(_columns(canvas) if canvas is not None else blank)
    return out


class RayExtractor:
    """The stateful extractor of the pipeline: one per actor, the model built once."""

    def __init__(self, model: ModelSpec | Extractor, out: str, digest: str, embeddings: bool) -> None:
        self.extractor = model.build() if isinstance(model, ModelSpec) else model
        embedding = self.extractor.embedding_kind if embeddings else None
        self.store = FeatureFolder.create(out, extractor_identity(self.extractor), embedding=embedding)
        if self.store.digest != digest:
            raise InputError(
                f"{out}: the model built on a Ray actor differs from the one the driver checked "
                "(another semcorr version on the cluster?)"
            )
        self.embeddings = embeddings
        self.device_lock = threading.Lock()

    def _pixels(self, batch: dict[str, np.ndarray], rows: list[int]) -> Any:
        names = [name for name in batch if name == PIXELS or name.startswith(PIXELS + ".")]
        tensors = {name: torch.from_numpy(np.array(batch[name][rows])) for name in names}
        if PIXELS in tensors:
            return tensors[PIXELS]
        return {name.split(".", 1)[1]: value for name, value in tensors.items()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [i for i, error in enumerate(batch["error"]) if not error]
        written = np.zeros(len(batch["key"]), dtype=np.int64)
        if rows:
            geometries = [
                ImageGeometry(**{k: tuple(v) for k, v in json.loads(batch["geometry"][i]).items()}) for i in rows
            ]
            extractor = self.extractor
            categories = [str(batch["category"][i]) or None for i in rows] if extractor.prompted else None
            with self.device_lock:  # one batch on the device at a time; the other call meanwhile writes
                pixels = pixels_to(self._pixels(batch, rows), extractor.device)
                fmap = extractor.extract_prepared(pixels, geometries, embeddings=self.embeddings, categories=categories)
                features = fmap.features.to(torch.float16).cpu()
                pooled = fmap.embeddings.to(torch.float16).cpu() if fmap.embeddings is not None else None
            for j, i in enumerate(rows):
                written[i] = self.store.put(
                    str(batch["key"][i]),
                    features[j],
                    geometries[j],
                    embedding=pooled[j] if pooled is not None else None,
                )
        return {"key": batch["key"], "path": batch["path"], "error": batch["error"], "bytes": written}


def _semcorr_cause(error: BaseException | None) -> SemcorrError | None:
    """The semcorr error inside a Ray error (raised on an actor or task), if there is one."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, SemcorrError):
            return error
        seen.add(id(error))
        error = getattr(error, "cause", None) or error.__cause__
    return None


def run_ray(
    model: ModelSpec | Extractor,
    items: Sequence[ImageItem],
    out: str | Path,
    settings: ExtractSettings = ExtractSettings(),
    ray_settings: RaySettings = RaySettings(),
    *,
    progress: bool = True,
) -> ExtractReport:
    """Extract ``items`` into the store ``out`` on a Ray cluster (see the module).

    Joins ``ray_settings.address`` (or the Ray already initialised in this process, or
    ``RAY_ADDRESS``, or a local Ray started for the run and stopped after it).
    """
    ray = import_ray()
    start = time.perf_counter()
    shape, identity = shape_of(model)
    embedding = shape.embedding_kind if settings.embeddings else None
    store = FeatureFolder.create(out, identity, embedding=embedding)  # refuses another model here, at once
    store.remove_stale_temporary_files()
    todo, damaged = pending(store, items)
    actors = f"{ray_settings.concurrency} actor{'s' if ray_settings.concurrency != 1 else ''}"
    report = ExtractReport(f"ray ({actors})", already_done=len(items) - len(todo), redone=damaged)
    started = not ray.is_initialized()
    if todo and started:
        ray.init(address=ray_settings.address, logging_level=logging.WARNING)
    try:
        if todo:
            _run_pipeline(ray, model, shape.preparer(), todo, store, settings, ray_settings, report, progress)
    finally:
        if todo and started:
            ray.shutdown()
        store.remove_stale_temporary_files()
        report.seconds = time.perf_counter() - start
        report.write_failures(store.root, "ray")
    return report


def _run_pipeline(
    ray: Any,
    model: ModelSpec | Extractor,
    prepare: Preparer,
    todo: Sequence[ImageItem],
    store: FeatureFolder,
    settings: ExtractSettings,
    ray_settings: RaySettings,
    report: ExtractReport,
    progress: bool,
) -> None:
    cpus = ray.cluster_resources().get("CPU", 0.0)
    taken = ray_settings.concurrency * ray_settings.cpus_per_actor
    if cpus - taken < 1:  # the actors would wait for images that no CPU is left to decode
        raise InputError(
            f"--concurrency {ray_settings.concurrency} actors of --cpus-per-actor "
            f"{ray_settings.cpus_per_actor:g} take {taken:g} of the Ray cluster's {cpus:g} CPUs, leaving "
            "none to decode images; use fewer actors or CPUs per actor (or start more nodes first)"
        )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # semcorr's own bar below counts written images
    blank = {name: np.zeros_like(value) for name, value in _columns(prepare(torch.zeros(3, 8, 8))[0]).items()}
    rows = [
        {"key": item.key, "path": str(item.path), "category": item.category or "", "mirrored": item.mirrored}
        for item in todo
    ]
    blocks = max(1, min(len(rows), math.ceil(len(rows) / settings.batch_size)))
    dataset = (
        ray.data.from_items(rows, override_num_blocks=blocks)
        .map(decode_row, fn_kwargs={"prepare": prepare, "blank": blank}, memory=DECODE_MEMORY)
        .map_batches(
            RayExtractor,
            batch_size=settings.batch_size,
            batch_format="numpy",
            fn_constructor_kwargs={
                "model": model,
                "out": str(store.root),
                "digest": store.digest,
                "embeddings": settings.embeddings,
            },
            compute=ray.data.ActorPoolStrategy(
                size=ray_settings.concurrency, max_concurrent_calls_per_actor=2, enable_true_multi_threading=True
            ),
            num_gpus=ray_settings.num_gpus,
            num_cpus=ray_settings.cpus_per_actor,
        )
    )
    bar = tqdm(
        total=len(todo) + report.already_done,
        initial=report.already_done,
        desc=f"extract {report.engine}",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for key, path, error, size in zip(batch["key"], batch["path"], batch["error"], batch["bytes"]):
                if error:
                    report.failed.append((str(key), str(path), str(error)))
                    if settings.on_error == "stop":
                        raise stop_on(str(error))
                    bar.write(f"semcorr: skipped an unreadable image: {error}", file=sys.stderr)
                elif size:
                    report.written += 1
                    report.bytes_written += int(size)
            bar.update(len(batch["key"]))
    except SemcorrError:
        raise
    except Exception as error:  # a semcorr error raised on an actor or task: its one line
        cause = _semcorr_cause(error)
        if cause is None:
            raise
        raise cause from None
    finally:
        bar.close()
