"""Deprecated adapters: old public names whose replacement takes other arguments, kept working for
one release so that scripts written against them give the same results.

Nothing imports this module directly: the tables of :mod:`semcorr._moved` point the old names here
(``semcorr.cache.TeacherCache`` -> :class:`TeacherCache`), with a :class:`DeprecationWarning` that
names the replacement (:data:`semcorr._moved.ADAPTED`). Deleted in the release named by
:data:`semcorr._moved.REMOVED_IN`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from .data import cub, spair
from .data.pairs import find_dataset_folder
from .errors import InputError
from .extract.config import ExtractSettings
from .extract.local import run_local
from .features.base import Extractor
from .geometry import ImageGeometry
from .images import ImageItem
from .settings import OnError
from .store.folder import FeatureFolder, extractor_identity, identity_digest
from .train.config import TrainConfig
from .train.pairing import benchmark_pairs


class TeacherCache(FeatureFolder):
    """``semcorr.cache.TeacherCache``: a feature store whose :meth:`put` takes the image's original
    size (H, W) instead of its :class:`~semcorr.geometry.ImageGeometry`, and which gives it back with
    :meth:`original_size`. The geometry follows from the identity's input size and resize mode, as
    it did for the teacher caches this class wrote."""

    @classmethod
    def create(  # type: ignore[override]  # the old API: no embedding argument
        cls,
        root: str | os.PathLike,
        identity: dict[str, Any],
    ) -> TeacherCache:
        """Open ``root`` for writing features of the teacher ``identity`` (no embeddings), creating it."""
        store = super().create(root, identity)
        assert isinstance(store, TeacherCache)
        return store

    def put(  # type: ignore[override]  # the old API: the size, not the geometry
        self,
        key: str,
        features: Tensor,
        original_size: tuple[int, int],
    ) -> int:
        """Store (C, h, w) features of image ``key`` whose original image is ``original_size`` (H, W)."""
        config = self.identity.get("config", {})
        canvas = config.get("dino", config)  # the teacher's grid is its DINOv2 member's
        if "input_size" not in canvas:
            raise InputError(
                f"{self.root}: the teacher's config names no input size; use "
                "semcorr.store.FeatureFolder.put with the image's geometry"
            )
        geometry = ImageGeometry.fit(original_size, canvas["input_size"], canvas.get("resize_mode", "square"))
        return super().put(key, features, geometry)

    def original_size(self, key: str) -> tuple[int, int]:
        """(H, W) of the original image of ``key``."""
        return self.geometry(key).original_size


@dataclass
class CacheReport:
    """``semcorr.cache.CacheReport``: what :func:`cache_teacher` did (for one rank)."""

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
        return (
            f"rank {self.rank}/{self.world_size}: cached {self.written} images in {self.seconds:.1f} s{speed}"
            f"{per_image}; {self.already_cached} already cached, {len(self.failed)} failed, "
            f"{self.other_ranks} left to other ranks"
        )


def cache_teacher(
    extractor: Extractor,
    images: Sequence[ImageItem],
    out: str | os.PathLike,
    *,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 1,
    on_error: OnError = "skip",
    progress: bool = True,
) -> CacheReport:
    """``semcorr.cache.cache_teacher``: :func:`semcorr.extract.run_local` without embeddings, with
    the old report."""
    settings = ExtractSettings(batch_size=batch_size, on_error=on_error, embeddings=False)
    report = run_local(extractor, images, Path(out), settings, rank=rank, world_size=world_size, progress=progress)
    return CacheReport(
        rank,
        world_size,
        written=report.written,
        already_cached=report.already_done,
        other_ranks=report.other_ranks,
        failed=[(key, message) for key, _, message in report.failed],
        bytes_written=report.bytes_written,
        seconds=report.seconds,
    )


def spair_find_root(root: str | os.PathLike) -> Path:
    """``semcorr.data.spair.find_root``: the ``SPair-71k`` folder, ``root`` itself or ``root/SPair-71k``."""
    return find_dataset_folder(Path(root), *spair.FOLDER)


def cub_find_root(root: str | os.PathLike) -> Path:
    """``semcorr.data.cub.find_root``: the ``CUB_200_2011`` folder, ``root`` itself or ``root/CUB_200_2011``."""
    return find_dataset_folder(Path(root), *cub.FOLDER)


def spair_training_pairs(root: str | os.PathLike, split: str = "trn") -> tuple[Path, list[tuple[str, str]]]:
    """``semcorr.train.pairing.spair_training_pairs``: SPair-71k's pairs of ``split`` as image keys
    relative to its ``JPEGImages`` folder, and that folder."""
    images = spair_find_root(root) / "JPEGImages"
    return benchmark_pairs("spair", root, split, images=images)


def fingerprint(extractor: Extractor) -> str:
    """``semcorr.eval.feature_store.fingerprint``: a short hash of what determines an extractor's
    features; random weights never match another extractor's."""
    digest = identity_digest(extractor_identity(extractor))
    return identity_digest({"identity": digest, "random": uuid.uuid4().hex}) if extractor.random_weights else digest


def compile_extractor(extractor: Extractor, *, mode: str | None = None) -> Extractor:
    """``semcorr.fast.compile_extractor``: ``torch.compile`` the extractor's forward in place; returns it."""
    extractor.compile(mode=mode)
    return extractor


def config_digest(config: TrainConfig) -> str:
    """``semcorr.train.engine.config_digest``: the hash of a run's settings that change its result."""
    return config.digest()


def sha256(path: Path) -> str:
    """``semcorr.features.released.sha256``: the SHA-256 hex digest of a file."""
    from .download import file_digests

    return file_digests(Path(path))["sha256"]
