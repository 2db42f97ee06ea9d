"""One least-recently-used cache, bounded by entries and, optionally, by bytes.

    features = LRU(max_items=32)                                  # the page's feature maps
    maps = LRU(max_bytes=512 << 20, size=lambda m: m.nbytes)      # upsampled maps, by memory

Not thread-safe by itself: callers that share one across threads hold their own lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A mapping that drops its least recently used entries beyond ``max_items`` entries or
    ``max_bytes`` bytes (as ``size`` counts them); the newest entry is always kept.

    Args:
        max_items: most entries kept (``None``: no count limit).
        max_bytes: most bytes kept, as the sum of ``size(value)`` (``None``: no byte limit).
        size: the bytes of a value (needed with ``max_bytes``).
    """

    def __init__(
        self, max_items: int | None = None, *, max_bytes: int | None = None, size: Callable[[V], int] | None = None
    ) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        if max_bytes is not None and size is None:
            raise ValueError("max_bytes needs a size function")
        self.max_items, self.max_bytes, self._size = max_items, max_bytes, size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self.nbytes = 0

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or ``None``."""
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` under ``key`` as the most recently used; drop the oldest beyond the limits."""
        if key in self._entries:
            self._forget(key)
        self._entries[key] = value
        self.nbytes += self._size(value) if self._size is not None else 0
        while len(self._entries) > 1 and self._over():
            self._forget(next(iter(self._entries)))
        return value

    def _over(self) -> bool:
        return (self.max_items is not None and len(self._entries) > self.max_items) or (
            self.max_bytes is not None and self.nbytes > self.max_bytes
        )

    def _forget(self, key: K) -> None:
        value = self._entries.pop(key)
        self.nbytes -= self._size(value) if self._size is not None else 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0
