"""The feature store's memory backend: the same entries as :class:`~semcorr.store.FeatureFolder`
(float16 ``(C, h, w)`` features, their geometry, optional float32 ``(1, h, w)`` raw norms and
``(D,)`` embedding), kept in this process instead of a folder.

    backend = MemoryFeatures()
    backend.put("cat.jpg", features, geometry, norms=norms)
    backend.get("cat.jpg")          # (C, h, w) float16
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError
from ..geometry import ImageGeometry


@dataclass(frozen=True)
class _Entry:
    features: Tensor
    geometry: ImageGeometry
    norms: Tensor | None
    embedding: Tensor | None


class MemoryFeatures:
    """Per-image features in memory, stored as the folder backend stores them (float16 features,
    float32 norms), so that a result does not depend on where features were kept."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def put(
        self,
        key: str,
        features: Tensor,
        geometry: ImageGeometry,
        *,
        embedding: Tensor | None = None,
        norms: Tensor | None = None,
    ) -> int:
        """Keep image ``key``'s (C, h, w) features; returns the bytes kept."""
        if features.ndim != 3:
            raise ValueError(f"features must be (C, h, w), got shape {tuple(features.shape)}")
        entry = _Entry(
            features.detach().to("cpu", torch.float16).clone(),
            geometry,
            None if norms is None else norms.detach().to("cpu", torch.float32).reshape(1, *features.shape[1:]),
            None if embedding is None else embedding.detach().to("cpu", torch.float16).reshape(-1),
        )
        self._entries[key] = entry
        return sum(
            t.numel() * t.element_size() for t in (entry.features, entry.norms, entry.embedding) if t is not None
        )

    def _entry(self, key: str) -> _Entry:
        if key not in self._entries:
            raise KeyError(f"no features stored for {key!r}")
        return self._entries[key]

    def get(self, key: str, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> Tensor:
        """The (C, h, w) features of image ``key``, float16 as kept unless ``dtype`` is given."""
        features = self._entry(key).features.to(device)
        return features if dtype is None else features.to(dtype)

    def geometry(self, key: str) -> ImageGeometry:
        return self._entry(key).geometry

    def norms(self, key: str) -> Tensor | None:
        """The (1, h, w) float32 raw norms of image ``key``'s cells, or ``None``."""
        return self._entry(key).norms

    def embedding(self, key: str, *, dtype: torch.dtype | None = None) -> Tensor:
        embedding = self._entry(key).embedding
        if embedding is None:
            raise InputError(f"{key}: no embedding was stored")
        return embedding if dtype is None else embedding.to(dtype)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def nbytes(self) -> int:
        """Bytes of all entries' tensors."""
        return sum(
            t.numel() * t.element_size()
            for e in self._entries.values()
            for t in (e.features, e.norms, e.embedding)
            if t is not None
        )

    def clear(self) -> None:
        self._entries.clear()
