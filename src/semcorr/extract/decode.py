"""Parallel decoding: images read, decoded and resized onto the model's canvas by worker processes.

A torch :class:`~torch.utils.data.DataLoader` over :class:`PreparedImages` runs the extractor's
:meth:`~semcorr.features.base.Extractor.preparer` (a small picklable value, no model) in
``workers`` processes, ``batch_size`` images at a time, in order. An image that cannot be read
does not stop the loader: it comes back as a failure, named by its path, beside the images that
loaded. On CUDA the batches arrive in pinned memory, so the copy to the device does not block.

Each worker keeps two batches ready (PyTorch's default): ``2 * workers`` batches of float32 canvases
in shared memory, e.g. 8 workers x 2 x 64 images x 2.3 MB at 434 px = 2.4 GB (in a container, give
``/dev/shm`` that much). Where ``/dev/shm`` has less room, fewer workers are started (a warning says
so). A worker never leaves the loader waiting: it puts each batch into shared memory itself
(:func:`into_shared_memory`), so a batch that does not fit (``/dev/shm`` full, a file-size limit)
comes back as a message instead of being lost in transit, and :func:`loaded_batches` raises it as a
:class:`~semcorr.errors.DecodingError`. A worker that dies (the out-of-memory killer, a crash) is
noticed by PyTorch at once (SIGCHLD); :func:`worker_failures_explained` turns that into a
:class:`~semcorr.errors.DecodingError` naming the signal. A loader that gets no batch for
:data:`STUCK_SECONDS` stops with an error too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from ..errors import DecodingError, InputError
from ..features.base import Pixels, Preparer, stack_pixels
from ..geometry import ImageGeometry
from ..images import ImageItem

Prepared = tuple[ImageItem, "Pixels | None", "ImageGeometry | None", "str | None"]  # item, canvas, geometry, error
SHARED_MEMORY = "/dev/shm"
STUCK_SECONDS = 600  # a worker that hands over no batch for this long is taken to be stuck
IN_PROCESS = "rerun with --workers 0 (decoding in this process)"


@dataclass
class PreparedBatch:
    """A batch as the model takes it, and the images of it that could not be read.

    Attributes:
        items: the images that loaded, in order.
        pixels: their canvases, (B, 3, S, S) float32 in [0, 1] (a dict of them for the teacher);
            ``None`` when none loaded.
        geometries: one per loaded image.
        failures: ``(item, message)`` per image that could not be read.
        handover_error: why the worker that decoded this batch could not hand it over (then the
            batch holds nothing else); ``None`` normally.
    """

    items: list[ImageItem]
    pixels: Pixels | None
    geometries: tuple[ImageGeometry, ...]
    failures: list[tuple[ImageItem, str]] = field(default_factory=list)
    handover_error: str | None = None

    def pin_memory(self) -> PreparedBatch:
        """The same batch with its canvases in page-locked memory (the DataLoader calls this)."""
        if self.pixels is None:
            return self
        pinned = (
            {key: value.pin_memory() for key, value in self.pixels.items()}
            if isinstance(self.pixels, dict)
            else self.pixels.pin_memory()
        )
        return PreparedBatch(self.items, pinned, self.geometries, self.failures, self.handover_error)


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
    """Stack the canvases of the images that loaded; keep the failures apart. In a decoding worker,
    the canvases are put into shared memory here (:func:`into_shared_memory`)."""
    loaded = [
        (item, canvas, geometry)
        for item, canvas, geometry, _ in records  # those that loaded: no error
        if canvas is not None and geometry is not None
    ]
    failures = [(item, error) for item, _, _, error in records if error is not None]
    pixels = stack_pixels([canvas for _, canvas, _ in loaded]) if loaded else None
    batch = PreparedBatch([item for item, _, _ in loaded], pixels, tuple(g for _, _, g in loaded), failures)
    return into_shared_memory(batch) if get_worker_info() is not None else batch


def into_shared_memory(batch: PreparedBatch) -> PreparedBatch:
    """``batch`` with its canvases moved into shared memory, or, where they do not fit, an empty
    batch whose ``handover_error`` says why.

    PyTorch would move them while sending the batch to the main process, in a thread of the
    worker where a failure is only printed: the batch would be lost and the loader would wait for
    it. Moved here, the failure is a message the main process raises (:func:`loaded_batches`).
    """
    if batch.pixels is None:
        return batch
    tensors = list(batch.pixels.values()) if isinstance(batch.pixels, dict) else [batch.pixels]
    try:
        for tensor in tensors:
            tensor.share_memory_()
    except RuntimeError as error:
        size = sum(tensor.untyped_storage().nbytes() for tensor in tensors)
        return PreparedBatch([], None, (), handover_error=handover_message(error, len(batch.items), size))
    return batch


def handover_message(error: Exception, count: int, size: int) -> str:
    """Why a worker could not put its batch of ``count`` images (``size`` bytes) into shared memory."""
    what = (
        f"a decoding worker cannot hand over its batch of {count} image{'s' if count != 1 else ''} "
        f"({size / 1e6:.1f} MB)"
    )
    found = re.search(r"\((\d+)\)\s*$", str(error))  # PyTorch ends the message with the errno
    code = int(found.group(1)) if found else 0
    if code == errno.EFBIG:
        return (
            f"{what}: the file-size limit (ulimit -f) is {_file_size_limit()} bytes, less than the shared-memory "
            f"file in {SHARED_MEMORY} that takes the batch; raise the limit, or {IN_PROCESS}"
        )
    if code == errno.ENOSPC:
        free = _shared_memory_free()
        room = f" ({free / 1e6:.0f} MB free)" if free is not None else ""
        return f"{what}: {SHARED_MEMORY} is full{room}; give it more room, use a smaller --batch-size, or {IN_PROCESS}"
    reason = os.strerror(code) if code else " ".join(str(error).split())
    return f"{what} through shared memory ({SHARED_MEMORY}): {reason}; {IN_PROCESS}"


def _file_size_limit() -> int | str:
    try:
        import resource
    except ImportError:  # not a Unix
        return "?"
    return resource.getrlimit(resource.RLIMIT_FSIZE)[0]


def _shared_memory_free() -> int | None:
    try:
        return shutil.disk_usage(SHARED_MEMORY).free
    except OSError:
        return None


def loaded_batches(loader: DataLoader) -> Iterator[PreparedBatch]:
    """The loader's batches; a batch a worker could not hand over, a worker that died and a worker
    that handed over nothing for :data:`STUCK_SECONDS` are each a :class:`DecodingError`."""
    with worker_failures_explained():
        for batch in loader:
            if batch.handover_error is not None:
                raise DecodingError(batch.handover_error)
            yield batch


@contextlib.contextmanager
def worker_failures_explained() -> Iterator[None]:
    """Turn PyTorch's errors about a decoding worker into one :class:`DecodingError` that says what
    happened. Wrap the whole loop that consumes batches: PyTorch raises a worker's death in the
    main thread wherever it is at that moment (its SIGCHLD handler), not only while it waits."""
    try:
        yield
    except RuntimeError as error:
        explained = explain_worker_failure(error)
        if explained is None:
            raise
        raise explained from None


_SIGNAL_HINTS = {
    "SIGKILL": "the out-of-memory killer sends it when memory runs out",
    "SIGBUS": f"{SHARED_MEMORY} ran out of room",
    "SIGSEGV": "a crash in an image library",
}


def explain_worker_failure(error: RuntimeError) -> DecodingError | None:
    """The :class:`DecodingError` of one of PyTorch's messages about a decoding worker, else ``None``."""
    text = " ".join(str(error).split())
    killed = re.search(r"DataLoader worker \(pid (\d+)\) is killed by signal: ([^.]+)\.", text)
    if killed:
        pid, description = killed.groups()
        name = _signal_names().get(description, description)
        hint = f": {_SIGNAL_HINTS[name]}" if name in _SIGNAL_HINTS else ""
        return DecodingError(
            f"a decoding worker (pid {pid}) was killed by signal {name} ({description}){hint}; "
            "rerun with fewer --workers, or --workers 0 (decoding in this process)"
        )
    exited = re.search(r"DataLoader worker \(pid (\d+)\) exited unexpectedly with exit code (-?\d+)", text)
    if exited:
        return DecodingError(
            f"a decoding worker (pid {exited.group(1)}) stopped with exit status {exited.group(2)}; "
            f"{IN_PROCESS} to see why"
        )
    gone = re.search(r"DataLoader worker \(pid\(s\) ([\d, ]+)\) exited unexpectedly", text)
    if gone:
        return DecodingError(f"decoding worker(s) (pid {gone.group(1)}) stopped unexpectedly; {IN_PROCESS} to see why")
    if "DataLoader timed out" in text:
        return DecodingError(
            f"the image decoding workers handed over no batch for {STUCK_SECONDS} s (out of shared "
            f"memory in {SHARED_MEMORY}?); {IN_PROCESS}, or use a smaller --batch-size"
        )
    return None


def _signal_names() -> dict[str, str]:
    """``{"Killed": "SIGKILL", ...}``: the descriptions PyTorch's messages give, to signal names."""
    names: dict[str, str] = {}
    for number in signal.Signals:
        description = signal.strsignal(number)
        if description:
            names.setdefault(description, number.name)
    return names


def image_loader(
    items: Sequence[ImageItem], prepare: Preparer, *, batch_size: int, workers: int, pin_memory: bool = False
) -> DataLoader:
    """Batches of prepared images, in order, decoded by ``workers`` processes (0: in this process;
    fewer where shared memory cannot hold their batches: :func:`workers_that_fit`)."""
    workers = workers_that_fit(workers, batch_size * canvas_bytes(prepare))
    return DataLoader(
        PreparedImages(items, prepare),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory and torch.cuda.is_available(),
        timeout=STUCK_SECONDS if workers else 0,
    )


def canvas_bytes(prepare: Preparer) -> int:
    """Bytes of one image's float32 canvas(es) as ``prepare`` makes them (both of the teacher's)."""
    canvases = [getattr(prepare, name) for name in ("sdxl", "dino") if hasattr(prepare, name)] or [prepare]
    return sum(3 * getattr(c, "input_size", 0) ** 2 * 4 for c in canvases)


def workers_that_fit(workers: int, batch_bytes: int, *, room: int | None = None) -> int:
    """At most ``workers``, as many as shared memory has room for: each holds two batches of
    ``batch_bytes`` there (half the free room is left to the rest of the machine)."""
    if workers == 0 or batch_bytes == 0:
        return workers
    room = _shared_memory_free() if room is None else room
    if room is None:
        return workers  # no /dev/shm here (not Linux): torch shares memory its own way
    fitting = max(0, min(workers, room // 2 // (2 * batch_bytes)))
    if fitting < workers:
        warnings.warn(
            f"{SHARED_MEMORY} has {room / 1e6:.0f} MB free: {fitting} decoding worker(s) instead of "
            f"{workers} (each holds two batches of {batch_bytes / 1e6:.0f} MB); give it more room, or use "
            "a smaller --batch-size",
            stacklevel=3,
        )
    return fitting
