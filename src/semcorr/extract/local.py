"""The local engine: one process extracts its share of the images into the store.

Three things overlap, so the device waits for neither input nor output: worker processes decode
and resize the next batches (:mod:`.decode`), the model runs on the current one, and a writer
thread writes the previous one (:class:`~semcorr.store.writer.BackgroundWriter`). Under
``torchrun`` or ``accelerate launch`` (``RANK``, ``WORLD_SIZE``), or with ``rank`` / ``world_size``
given, each process takes the images whose key hashes to its rank (``sha1(key) mod world_size``):
the shares never overlap and together cover every image, whatever the order of listing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import InputError
from ..features.base import Extractor, pixels_to
from ..images import ImageItem
from ..store.folder import FeatureFolder, extractor_identity, rank_of
from ..store.writer import BackgroundWriter, Entry
from .config import ExtractSettings
from .decode import image_loader, loaded_batches, worker_failures_explained
from .report import ExtractReport


@dataclass
class ExtractedBatch:
    """One batch's results (features on the CPU, float16) and the images that could not be read."""

    entries: list[Entry]
    failures: list[tuple[ImageItem, str]]


def extract_batches(
    extractor: Extractor, items: Sequence[ImageItem], settings: ExtractSettings = ExtractSettings()
) -> Iterator[ExtractedBatch]:
    """Extract ``items`` batch by batch, decoding ahead in ``settings.decoding_workers`` processes.

    Yields, per batch of ``settings.batch_size`` images, an :class:`ExtractedBatch`: an
    :class:`~semcorr.store.writer.Entry` per image that loaded ((C, h, w) float16 features, its
    geometry and, with ``settings.embeddings``, its (D,) float16 embedding), and the failures.
    """
    if not items:
        return  # no worker processes to start
    device = extractor.device
    loader = image_loader(
        items,
        extractor.preparer(),
        batch_size=settings.batch_size,
        workers=settings.decoding_workers,
        pin_memory=device.type == "cuda",
    )
    for batch in loaded_batches(loader):
        entries = []
        if batch.items:
            assert batch.pixels is not None  # some images loaded
            pixels = pixels_to(batch.pixels, device, non_blocking=True)
            categories = [item.category for item in batch.items] if extractor.prompted else None
            fmap = extractor.extract_prepared(
                pixels, batch.geometries, embeddings=settings.embeddings, categories=categories
            )
            features = fmap.features.to(torch.float16).cpu()
            pooled = fmap.embeddings.to(torch.float16).cpu() if fmap.embeddings is not None else None
            norms = fmap.norms.cpu() if fmap.norms is not None else None
            entries = [
                Entry(
                    item.key,
                    features[i],
                    geometry,
                    pooled[i] if pooled is not None else None,
                    norms[i] if norms is not None else None,
                )
                for i, (item, geometry) in enumerate(zip(batch.items, batch.geometries))
            ]
        yield ExtractedBatch(entries, batch.failures)


def pending(store: FeatureFolder, items: Sequence[ImageItem]) -> tuple[list[ImageItem], int]:
    """The items whose entry is not whole yet, and how many of them have a damaged entry file."""
    missing = set(store.missing([item.key for item in items]))
    todo = [item for item in items if item.key in missing]
    return todo, sum(store.path(item.key).is_file() for item in todo)


def stop_on(message: str) -> InputError:
    """The error that ends a run at an unreadable image (``on_error="stop"``)."""
    return InputError(f"{message} (stopped by --on-error stop; the store keeps what was extracted)")


def run_local(
    extractor: Extractor,
    items: Sequence[ImageItem],
    out: str | Path,
    settings: ExtractSettings = ExtractSettings(),
    *,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> ExtractReport:
    """Extract this rank's share of ``items`` with ``extractor`` into the store ``out``.

    Resumable (whole entries are skipped; damaged ones are written again) and crash-safe (an entry
    is written whole or not at all); refuses a store of another model or config.
    """
    start = time.perf_counter()
    embedding = extractor.embedding_kind if settings.embeddings else None
    store = FeatureFolder.create(out, extractor_identity(extractor), embedding=embedding)
    store.remove_stale_temporary_files()
    mine = [item for item in items if rank_of(item.key, world_size) == rank]
    todo, damaged = pending(store, mine)
    name = f"rank {rank}/{world_size}" if world_size > 1 else "local"
    report = ExtractReport(name, already_done=len(mine) - len(todo), redone=damaged, other_ranks=len(items) - len(mine))
    bar = tqdm(
        total=len(mine),
        initial=report.already_done,
        desc=f"extract {name}",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    )

    def write(entry: Entry) -> int:
        return store.put(entry.key, entry.features, entry.geometry, embedding=entry.embedding)

    writer = BackgroundWriter(write)
    try:
        with worker_failures_explained(), writer:
            for batch in extract_batches(extractor, todo, settings):
                for item, message in batch.failures:
                    report.failed.append((item.key, str(item.path), message))
                    if settings.on_error == "stop":
                        raise stop_on(message)
                    bar.write(f"semcorr: skipped an unreadable image: {message}", file=sys.stderr)
                writer.submit(batch.entries)
                bar.update(len(batch.entries) + len(batch.failures))
    finally:
        bar.close()
        report.written, report.bytes_written = writer.written, writer.bytes
        report.seconds = time.perf_counter() - start
        report.write_failures(store.root, f"rank{rank}")
    return report
