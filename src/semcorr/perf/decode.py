"""``semcorr bench-decode``: how fast images are read, decoded and resized onto a model's canvas,
alone (no model), per number of decoding worker processes: what ``--workers`` must be for the
input to keep up with the model.

Each configuration runs the extraction engine's loader (:func:`semcorr.extract.image_loader`)
over the same images, after one untimed pass that brings the files into the page cache; the
passes are run round-robin (``repeats`` times) and the median is reported, so other processes'
load falls on each alike.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

from ..extract.config import ModelSpec
from ..extract.decode import image_loader, loaded_batches
from ..extract.model import shape_of
from ..images import list_images
from ..runtime import cpu_name, load_average


def _seconds(items: Sequence, prepare: Any, workers: int, batch_size: int) -> float:
    start = time.perf_counter()
    for _ in loaded_batches(image_loader(items, prepare, batch_size=batch_size, workers=workers)):
        pass
    return time.perf_counter() - start


def bench_decode(
    images: str | os.PathLike,
    *,
    model: ModelSpec = ModelSpec("student"),
    workers: Sequence[int] = (0, 1, 2),
    batch_size: int = 8,
    limit: int | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Images/s of decoding and resizing ``images`` (a folder or list file) onto ``model``'s canvas
    (built without weights) with each number of ``workers`` (0: in this process).

    Returns:
        ``{"model", "canvas", "images", "cpu", "cpu_count", "load_average", "rows": [{"workers",
        "images_per_s", "per_worker", "ms_per_image", "runs_s"}]}``; ``per_worker`` divides by the
        decoding processes (1 for ``workers=0``).
    """
    items = list_images(images)[:limit]
    shape, _ = shape_of(model)
    prepare = shape.preparer()
    _seconds(items, prepare, max(workers), batch_size)  # untimed: the page cache, the first imports
    runs: dict[int, list[float]] = {count: [] for count in workers}
    before = load_average()
    for _ in range(repeats):
        for count in workers:
            runs[count].append(_seconds(items, prepare, count, batch_size))
    rows = []
    for count in workers:
        seconds = statistics.median(runs[count])
        rate = len(items) / seconds
        rows.append(
            {
                "workers": count,
                "images_per_s": round(rate, 2),
                "per_worker": round(rate / max(1, count), 2),
                "ms_per_image": round(1000 * seconds / len(items), 2),
                "runs_s": [round(s, 3) for s in runs[count]],
            }
        )
    return {
        "model": model.name,
        "canvas": repr(prepare),
        "images": len(items),
        "batch_size": batch_size,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": {"before": before, "after": load_average()},
        "rows": rows,
    }


def format_decode_table(result: dict[str, Any]) -> str:
    lines = [
        f"decoding + resizing {result['images']} images onto {result['canvas']} ({result['model']}), "
        f"batch {result['batch_size']}; {result['cpu']}, {result['cpu_count']} CPUs, load "
        f"{result['load_average']['before']} -> {result['load_average']['after']}",
        "| workers | images/s | per worker | ms per image |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {row['workers']} | {row['images_per_s']} | {row['per_worker']} | {row['ms_per_image']} |"
        for row in result["rows"]
    ]
    return "\n".join(lines)
