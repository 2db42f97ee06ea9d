"""Writing entries in the background, so the device never waits for the disk.

:class:`BackgroundWriter` runs one thread that takes batches of entries from a bounded queue and
writes them (``FeatureFolder.put``): the caller hands over a batch and goes on computing the next.
The queue holds at most ``depth`` batches, which bounds the memory of features waiting to be
written and makes a caller faster than the disk wait rather than pile up. A failed write stops
the writer; the error is raised in the caller at its next :meth:`submit` or at :meth:`close`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from ..geometry import ImageGeometry

_DONE = object()


@dataclass(frozen=True)
class Entry:
    """One image's result on the CPU: (C, h, w) features, (D,) embedding and (1, h, w) raw norms
    (``None`` without them)."""

    key: str
    features: Tensor
    geometry: ImageGeometry
    embedding: Tensor | None = None
    norms: Tensor | None = None


class BackgroundWriter:
    """Write batches of :class:`Entry` with ``write`` in a thread of their own.

    >>> with BackgroundWriter(lambda e: store.put(e.key, e.features, e.geometry)) as writer:  # doctest: +SKIP
    ...     writer.submit(entries)

    Attributes:
        written: entries written so far; ``bytes``: what ``write`` returned, summed.
    """

    def __init__(self, write: Callable[[Entry], int], *, depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self.written = 0
        self.bytes = 0
        # Started by the first submit: processes forked before it (data-loading workers) see no thread.
        self._thread = threading.Thread(target=self._run, name="semcorr-writer", daemon=True)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is _DONE:
                return
            if self._error is not None:
                continue  # drain: the caller learns of the error and stops submitting
            try:
                for entry in batch:
                    self.bytes += self._write(entry)
                    self.written += 1
            except BaseException as error:  # raised again in the caller's thread
                self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, entries: Sequence[Entry]) -> None:
        """Queue a batch for writing (waits while ``depth`` batches are queued)."""
        self._raise()
        if self._thread.ident is None:  # not started yet
            self._thread.start()
        self._queue.put(list(entries))

    def close(self) -> None:
        """Write what is queued, stop the thread, raise a write error if there was one."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, kind: type | None, *rest: object) -> None:
        if kind is None:
            self.close()
        elif self._thread.is_alive():  # an error in the caller: finish what is queued, keep its error
            self._queue.put(_DONE)
            self._thread.join()
