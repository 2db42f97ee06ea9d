"""Filling a teacher cache: list the images, keep this rank's share, skip what is done, extract, store.

Several processes (``torchrun``, ``accelerate launch``, or one per machine with ``--rank`` /
``--world-size``) fill one cache: image ``key`` belongs to rank ``sha1(key) mod world_size``,
so the shares never overlap and together cover every image, whatever the order of listing.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from tqdm import tqdm

from ..errors import InputError
from ..features.base import Extractor
from ..fileio import check_output_folder
from ..images import ImageItem, load_image
from ..settings import ON_ERROR, OnError
from .store import TeacherCache, rank_of


@dataclass
class CacheReport:
    """What one run did (for one rank)."""

    rank: int
    world_size: int
    written: int = 0
    already_cached: int = 0
    other_ranks: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0

    @property
    def bytes_per_image(self) -> float:
        return self.bytes_written / self.written if self.written else 0.0

    def summary(self) -> str:
        per_image = f", {self.bytes_per_image / 1e6:.2f} MB per image" if self.written else ""
        speed = f", {self.seconds / self.written:.2f} s per image" if self.written else ""
        return (f"rank {self.rank}/{self.world_size}: cached {self.written} images in {self.seconds:.1f} s{speed}"
                f"{per_image}; {self.already_cached} already cached, {len(self.failed)} failed, "
                f"{self.other_ranks} left to other ranks")


def teacher_identity(extractor: Extractor) -> dict[str, Any]:
    """What makes two runs' features comparable: the extractor's name, class, full config and
    whether its weights are random. Stored in the cache's config.json."""
    return {"model": extractor.name, "class": f"{type(extractor).__module__}.{type(extractor).__qualname__}",
            "random_weights": bool(extractor.random_weights), "config": dataclasses.asdict(extractor.config),
            "grid": list(extractor.grid_size())}


def _batches(items: Sequence[ImageItem], size: int) -> Iterable[Sequence[ImageItem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def cache_teacher(extractor: Extractor, images: Sequence[ImageItem], out: str | os.PathLike, *, rank: int = 0,
                  world_size: int = 1, batch_size: int = 1, on_error: OnError = "skip",
                  progress: bool = True) -> CacheReport:
    """Cache ``extractor``'s features of this rank's share of ``images`` in ``out``.

    Resumable: images already in the cache are skipped. Crash-safe: an entry is written whole or
    not at all. Refuses a cache made with another teacher or config.

    Args:
        extractor: the teacher (any :class:`Extractor`); features are stored as (C, h, w) float16.
        images: from :func:`semcorr.images.list_images`.
        rank, world_size: this process's share (see :func:`semcorr.runtime.resolve_rank`).
        batch_size: images per forward pass.
        on_error: an unreadable image is reported and skipped (``skip``) or stops the run (``stop``).
        progress: show a tqdm progress bar on stderr.
    """
    if on_error not in ON_ERROR:
        raise InputError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    start = time.perf_counter()
    check_output_folder(out, what="teacher cache")
    cache = TeacherCache.create(out, teacher_identity(extractor))
    cache.remove_stale_temporary_files()
    mine = [item for item in images if rank_of(item.key, world_size) == rank]
    todo = [item for item in mine if item.key not in cache]
    report = CacheReport(rank, world_size, already_cached=len(mine) - len(todo), other_ranks=len(images) - len(mine))
    prompted = "categories" in inspect.signature(extractor.extract).parameters
    bar = tqdm(total=len(mine), initial=report.already_cached, desc=f"cache rank {rank}/{world_size}", unit="img",
               disable=not progress, dynamic_ncols=True)
    try:
        for batch in _batches(todo, batch_size):
            loaded = []
            for item in batch:
                try:
                    loaded.append((item, load_image(item.path)))
                except InputError as error:
                    if on_error == "stop":
                        raise InputError(f"{error} (stopped by --on-error stop; the cache keeps what was done)"
                                         ) from None
                    report.failed.append((item.key, str(error)))
                    _log_failure(cache.root, rank, item, str(error))
                    bar.write(f"semcorr: skipped {item.key}: {error}", file=sys.stderr)
            if loaded:
                extra = {"categories": [item.category for item, _ in loaded]} if prompted else {}
                fmap = extractor.extract([pixels for _, pixels in loaded], **extra)
                for (item, _), features, geometry in zip(loaded, fmap.features, fmap.geometries):
                    report.bytes_written += cache.put(item.key, features, geometry.original_size)
                    report.written += 1
            bar.update(len(batch))
            if report.written:
                bar.set_postfix_str(f"{report.bytes_per_image / 1e6:.2f} MB/img")
    finally:
        bar.close()
        report.seconds = time.perf_counter() - start
    return report


def _log_failure(root: Path, rank: int, item: ImageItem, message: str) -> None:
    with open(root / f"errors-rank{rank}.jsonl", "a") as handle:
        handle.write(json.dumps({"key": item.key, "path": str(item.path), "error": message}) + "\n")
