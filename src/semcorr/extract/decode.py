"""Parallel decoding: images read, decoded and resized onto the model's canvas by worker processes.

A torch :class:`~torch.utils.data.DataLoader` over :class:`PreparedImages` runs the extractor's
:meth:`~semcorr.features.base.Extractor.preparer` (a small picklable value, no model) in
``workers`` processes, ``batch_size`` images at a time, in order. An image that cannot be read
does not stop the loader: it comes back as a failure, named by its path, beside the images that
loaded. On CUDA the batches arrive in pinned memory, so the copy to the device does not block.

Each worker keeps two batches ready (PyTorch's default): ``2 * workers`` batches of float32 canvases
in shared memory, e.g. 8 workers x 2 x 64 images x 2.3 MB at 434 px = 2.4 GB (in a container, give
``/dev/shm`` that much). Where ``/dev/shm`` has less room, fewer workers are started (a warning says
so), since a worker that cannot hand over its batch would leave the loader waiting forever; and a
loader that gets no batch for :data:`STUCK_SECONDS` stops with an error instead of hanging.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError
from ..features.base import Pixels, Preparer, stack_pixels
from ..geometry import ImageGeometry
from ..images import ImageItem

Prepared = tuple[ImageItem, "Pixels | None", "ImageGeometry | None", "str | None"]  # item, canvas, geometry, error
SHARED_MEMORY = "/dev/shm"
STUCK_SECONDS = 600  # a worker that hands over no batch for this long is taken to be stuck


@dataclass
class PreparedBatch:
    """A batch as the model takes it, and the images of it that could not be read.

    Attributes:
        items: the images that loaded, in order.
        pixels: their canvases, (B, 3, S, S) float32 in [0, 1] (a dict of them for the teacher);
            ``None`` when none loaded.
        geometries: one per loaded image.
        failures: ``(item, message)`` per image that could not be read.
    """

    items: list[ImageItem]
    pixels: Pixels | None
    geometries: tuple[ImageGeometry, ...]
    failures: list[tuple[ImageItem, str]] = field(default_factory=list)

    def pin_memory(self) -> "PreparedBatch":
        """The same batch with its canvases in page-locked memory (the DataLoader calls this)."""
        if self.pixels is None:
            return self
        pinned = ({key: value.pin_memory() for key, value in self.pixels.items()} if isinstance(self.pixels, dict)
                  else self.pixels.pin_memory())
        return PreparedBatch(self.items, pinned, self.geometries, self.failures)


def prepare_item(item: ImageItem, prepare: Preparer) -> Prepared:
    """Load one image and put it on its canvas; an unreadable image becomes an error message."""
    try:
        canvas, geometry = prepare(item.load())
    except InputError as error:
        return item, None, None, str(error)
    return item, canvas, geometry, None


class PreparedImages(Dataset):
    """``items[i]`` loaded and prepared (see :func:`prepare_item`)."""

    def __init__(self, items: Sequence[ImageItem], prepare: Preparer) -> None:
        self.items, self.prepare = list(items), prepare

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Prepared:
        return prepare_item(self.items[index], self.prepare)


def collate(records: Sequence[Prepared]) -> PreparedBatch:
    """Stack the canvases of the images that loaded; keep the failures apart."""
    loaded = [(item, canvas, geometry) for item, canvas, geometry, _ in records  # those that loaded: no error
              if canvas is not None and geometry is not None]
    failures = [(item, error) for item, _, _, error in records if error is not None]
    pixels = stack_pixels([canvas for _, canvas, _ in loaded]) if loaded else None
    return PreparedBatch([item for item, _, _ in loaded], pixels, tuple(g for _, _, g in loaded), failures)


def image_loader(items: Sequence[ImageItem], prepare: Preparer, *, batch_size: int, workers: int,
                 pin_memory: bool = False) -> DataLoader:
    """Batches of prepared images, in order, decoded by ``workers`` processes (0: in this process;
    fewer where shared memory cannot hold their batches: :func:`workers_that_fit`)."""
    workers = workers_that_fit(workers, batch_size * canvas_bytes(prepare))
    return DataLoader(PreparedImages(items, prepare), batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=collate, pin_memory=pin_memory and torch.cuda.is_available(),
                      timeout=STUCK_SECONDS if workers else 0)


def canvas_bytes(prepare: Preparer) -> int:
    """Bytes of one image's float32 canvas(es) as ``prepare`` makes them (both of the teacher's)."""
    canvases = [getattr(prepare, name) for name in ("sdxl", "dino") if hasattr(prepare, name)] or [prepare]
    return sum(3 * getattr(c, "input_size", 0) ** 2 * 4 for c in canvases)


def workers_that_fit(workers: int, batch_bytes: int, *, room: int | None = None) -> int:
    """At most ``workers``, as many as shared memory has room for: each holds two batches of
    ``batch_bytes`` there (half the free room is left to the rest of the machine)."""
    if workers == 0 or batch_bytes == 0:
        return workers
    if room is None:
        try:
            room = shutil.disk_usage(SHARED_MEMORY).free
        except OSError:
            return workers  # no /dev/shm here (not Linux): torch shares memory its own way
    fitting = max(0, min(workers, room // 2 // (2 * batch_bytes)))
    if fitting < workers:
        warnings.warn(f"{SHARED_MEMORY} has {room / 1e6:.0f} MB free: {fitting} decoding worker(s) instead of "
                      f"{workers} (each holds two batches of {batch_bytes / 1e6:.0f} MB); give it more room, or use "
                      "a smaller --batch-size", stacklevel=3)
    return fitting
