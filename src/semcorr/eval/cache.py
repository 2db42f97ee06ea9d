"""The evaluation cache: features of every image of a benchmark, computed once in batches and kept
in the feature store's memory or folder backend (:mod:`semcorr.store`).

Features are kept as float16 ``(C, h, w)`` on the extractor's native grid in both modes, so a
result does not depend on where they were kept, with each cell's raw norm as float32 ``(1, h, w)``
(:attr:`FeatureMap.norms`). They are computed by the extraction engine
(:func:`semcorr.extract.extract_batches`: images decoded by worker processes, batches of
``batch_size``). On disk they live in a feature store (:class:`semcorr.store.FeatureFolder`, the
store ``semcorr extract`` and ``semcorr cache-teacher`` write) at ``<cache_dir>/<digest>/``, where
the digest covers the model's name, class, whole config and grid; an image's key covers its
resolved path, size and modification time, so a changed file is computed again. Entries are
written atomically in the background, so an interrupted run resumes where it stopped. Random-weight
models never reuse a cache (their weights differ on every build). Folders of the earlier
evaluation cache (flat ``.safetensors`` files, no ``config.json``) are not read; a warning names them.

An image's mirror image (pose alignment, :mod:`semcorr.matching.pose_align`) is an image of its own,
``flipped=True``, with a key of its own (``...|mirrored``).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from tqdm import tqdm

from ..errors import CheckpointError, InputError
from ..extract.config import ExtractSettings
from ..extract.decode import worker_failures_explained
from ..extract.local import extract_batches
from ..features.base import Extractor, FeatureMap
from ..geometry import ImageGeometry
from ..images import ImageItem
from ..lru import LRU
from ..store.folder import FeatureFolder, extractor_identity, identity_digest
from ..store.memory import MemoryFeatures
from ..store.writer import BackgroundWriter, Entry

CacheMode = Literal["auto", "memory", "disk"]
CACHE_MODES: tuple[str, ...] = ("auto", "memory", "disk")
DEFAULT_MEMORY_LIMIT = 1 << 30  # auto mode keeps at most this many bytes of features in memory
RECENT_ENTRIES = 128  # disk mode keeps this many recently read images in memory
DEFAULT_UPSAMPLED_LIMIT = 512 << 20  # bytes of upsampled maps kept for reuse
_Key = tuple[Path, bool]  # (image file, mirrored left to right)
_Stored = tuple[Tensor, ImageGeometry, Tensor | None]  # (C, h, w) float16 features, geometry, (1, h, w) norms


def _image_key(image: _Key) -> str:
    """The store key of an image file (or its mirror image): resolved path, size, modification time."""
    path, flipped = image
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}{'|mirrored' if flipped else ''}"


def _earlier_caches(base: Path) -> list[Path]:
    """Folders of the evaluation cache of semcorr before the feature store: flat .safetensors files."""
    if not base.is_dir():
        return []
    return sorted(
        folder
        for folder in base.iterdir()
        if folder.is_dir()
        and not (folder / "config.json").exists()
        and next(folder.glob("*.safetensors"), None) is not None
    )


class FeatureCache:
    """Per-image features of one extractor, computed on demand, kept in a feature store backend.

    Args:
        extractor: the model.
        mode: ``memory`` (:class:`~semcorr.store.MemoryFeatures`), ``disk``
            (:class:`~semcorr.store.FeatureFolder`) or ``auto`` (disk when ``cache_dir`` is given or
            when all images' features would pass ``memory_limit`` bytes, else memory).
        cache_dir: where disk features live (kept, reused by later runs); ``None`` with disk mode:
            a temporary folder removed by :meth:`close`.
        batch_size: images per extractor call.
        progress: show a progress bar while extracting.
        workers: processes decoding images (``None``: one per CPU, at most 8; 0: none).
    """

    def __init__(
        self,
        extractor: Extractor,
        *,
        mode: CacheMode = "auto",
        cache_dir: str | Path | None = None,
        batch_size: int = 8,
        progress: bool = True,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        workers: int | None = None,
    ) -> None:
        if mode not in CACHE_MODES:
            raise InputError(f"feature cache must be one of {CACHE_MODES}, got {mode!r}")
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.extractor, self.batch_size, self.progress = extractor, batch_size, progress
        self.settings = ExtractSettings(batch_size=batch_size, workers=workers, on_error="stop", embeddings=False)
        self.memory_limit = memory_limit
        self.mode: str = "disk" if (mode == "disk" or (mode == "auto" and cache_dir is not None)) else mode
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._folder: FeatureFolder | None = None
        self._temporary: Path | None = None
        self._memory = MemoryFeatures()
        self._recent: LRU[str, _Stored] = LRU(RECENT_ENTRIES)
        self.computed = 0  # images whose features this cache computed (the rest came from disk)
        self._upsampled: LRU[tuple[_Key, int | None], FeatureMap] = LRU(
            max_bytes=DEFAULT_UPSAMPLED_LIMIT, size=lambda fmap: fmap.features.numel() * fmap.features.element_size()
        )

    @property
    def upsampled_limit(self) -> int:
        """Bytes of upsampled maps kept for reuse."""
        return self._upsampled.max_bytes or 0

    @upsampled_limit.setter
    def upsampled_limit(self, value: int) -> None:
        self._upsampled.max_bytes = value

    @property
    def folder(self) -> Path | None:
        """The feature store folder in use (``None`` in memory mode)."""
        return self._folder.root if self._folder is not None else None

    def _open_folder(self) -> FeatureFolder:
        if self._folder is None:
            if self._cache_dir is None:
                base = self._temporary = Path(tempfile.mkdtemp(prefix="semcorr-features-"))
            else:
                base = self._cache_dir
                earlier = _earlier_caches(self._cache_dir)
                if earlier:
                    warnings.warn(
                        f"{self._cache_dir}: {len(earlier)} folders of the earlier evaluation cache "
                        f"(e.g. {earlier[0].name}) are no longer read; delete them",
                        stacklevel=4,
                    )
            identity = extractor_identity(self.extractor)
            if self.extractor.random_weights:  # never reused: the weights differ on every build
                identity["build"] = uuid.uuid4().hex
            root = base / identity_digest(identity)
            self._folder = FeatureFolder.create(root, identity)
        return self._folder

    def _backend(self) -> FeatureFolder | MemoryFeatures:
        return self._memory if self.mode == "memory" else self._open_folder()

    def _read(self, key: _Key) -> _Stored:
        backend, name = self._backend(), _image_key(key)
        if isinstance(backend, MemoryFeatures):
            if name not in backend:
                raise KeyError(f"no features computed for {key[0]}{' (flipped)' if key[1] else ''}")
            return backend.get(name), backend.geometry(name), backend.norms(name)
        try:
            return backend.get(name), backend.geometry(name), backend.norms(name)
        except (KeyError, CheckpointError) as error:  # a damaged file: say which, and how to recover
            raise InputError(
                f"{backend.path(name)}: unreadable feature cache entry for {key[0]} ({error}); delete it and rerun"
            ) from None

    def compute(self, images: Sequence[Path], *, flipped: Sequence[Path] = ()) -> None:
        """Extract (batched) the features of every image not stored yet.

        Args:
            images: image files.
            flipped: image files whose mirror images (left to right) are needed too, e.g. the
                sources of pose-aligned pairs; read back with ``flipped=True``.
        """
        keys = list(dict.fromkeys([(Path(i), False) for i in images] + [(Path(i), True) for i in flipped]))
        missing = [key for key in keys if self.mode == "auto" or _image_key(key) not in self._backend()]
        named = {_image_key(key): key for key in missing}
        items = [ImageItem(name, key[0], mirrored=key[1]) for name, key in named.items()]

        def write(entry: Entry) -> int:  # the folder is opened before the first batch is handed over
            return self._open_folder().put(entry.key, entry.features, entry.geometry, norms=entry.norms)

        writer = BackgroundWriter(write)
        with (
            worker_failures_explained(),
            tqdm(total=len(missing), desc="features", unit="img", disable=not self.progress) as bar,
            writer,
        ):
            for batch in extract_batches(self.extractor, items, self.settings):
                if batch.failures:
                    raise InputError(batch.failures[0][1])
                if self.mode == "auto":  # decide from the size of the first batch
                    per_image = batch.entries[0].features.numel() * batch.entries[0].features.element_size()
                    self.mode = "disk" if per_image * len(keys) > self.memory_limit else "memory"
                if self.mode == "memory":
                    for entry in batch.entries:
                        self._memory.put(entry.key, entry.features, entry.geometry, norms=entry.norms)
                else:
                    self._open_folder()
                    writer.submit(batch.entries)
                self.computed += len(batch.entries)
                bar.update(len(batch.entries))

    def get(self, image: Path, *, flipped: bool = False) -> tuple[Tensor, ImageGeometry]:
        """(C, h, w) float16 features and the geometry of one image (of its mirror image if ``flipped``)."""
        features, geometry, _ = self._stored((Path(image), bool(flipped)))
        return features, geometry

    def _stored(self, key: _Key) -> _Stored:
        if self.mode == "memory":
            return self._read(key)
        name = _image_key(key)
        entry = self._recent.get(name)
        return entry if entry is not None else self._recent.put(name, self._read(key))

    def _one(self, image: _Key, grid: int | None) -> FeatureMap:
        """The map of one image: float32 L2-normalised features on the device, upsampled to ``grid``
        (cached); on the native grid (``grid`` None) with its norms."""
        kept = self._upsampled.get((image, grid))
        if kept is not None:
            return kept
        features, geometry, norms = self._stored(image)
        device = self.extractor.device
        features = torch.nn.functional.normalize(features.to(device, torch.float32), dim=0)
        fmap = FeatureMap(
            features[None],
            (geometry,),
            self.extractor.name,
            self.extractor.random_weights,
            norms=None if norms is None else norms[None].to(device),
        ).upsample(grid)
        return self._upsampled.put((image, grid), fmap)

    def feature_map(self, images: Sequence[Path], grid: int | None = None, *, flipped: bool = False) -> FeatureMap:
        """The :class:`FeatureMap` (float32, L2-normalised, on the extractor's device) of stored
        images (of their mirror images if ``flipped``), upsampled to a ``grid`` x ``grid`` grid as
        :meth:`FeatureMap.upsample` does; on the native grid (``None``) it carries the raw norms.

        Upsampled maps of recently used images are kept (up to :attr:`upsampled_limit` bytes), so an
        image that appears in many pairs is upsampled once.
        """
        return FeatureMap.join([self._one((Path(image), bool(flipped)), grid) for image in images])

    def close(self) -> None:
        """Drop memory features; remove a temporary disk cache."""
        self._memory.clear()
        self._recent.clear()
        self._upsampled.clear()
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None
            self._folder = None

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
