"""Features of every image of a benchmark, computed once in batches, kept in memory or on disk.

Features are kept as float16 ``(C, h, w)`` on the extractor's native grid in both modes, so a
result does not depend on where they were kept, with each cell's raw norm as float32 ``(1, h, w)``
(:attr:`FeatureMap.norms`). On disk each image is one safetensors file (``features`` and ``norms``,
plus its geometry in the metadata) under ``<cache_dir>/<fingerprint>/``, where the
fingerprint covers the model name and its whole config; a file's name covers the image's path,
size and modification time. Files are written atomically, so an interrupted run resumes where it
stopped. Random-weight models never reuse a cache (their weights differ on every build).

An image's mirror image (pose alignment, :mod:`semcorr.pose_align`) is stored as an image of its
own, ``flipped=True``, in a file of its own (``<key>-hflip.safetensors``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Literal, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor
from tqdm import tqdm

from ..errors import InputError
from ..features.base import Extractor, FeatureMap
from ..fileio import write_atomically
from ..geometry import ImageGeometry
from ..images import load_image
from ..pose_align import flip_image

CacheMode = Literal["auto", "memory", "disk"]
CACHE_MODES: tuple[str, ...] = ("auto", "memory", "disk")
DEFAULT_MEMORY_LIMIT = 1 << 30  # auto mode keeps at most this many bytes of features in memory
_LRU_SIZE = 128  # disk mode keeps this many recently used images in memory
DEFAULT_UPSAMPLED_LIMIT = 512 << 20  # bytes of upsampled maps kept for reuse
_Key = tuple[Path, bool]  # (image file, mirrored left to right)
_Entry = tuple[Tensor, ImageGeometry, Tensor]  # (C, h, w) float16 features, geometry, (1, h, w) float32 norms


def fingerprint(extractor: Extractor) -> str:
    """A short hash of what determines an extractor's features (name and config)."""
    config = dataclasses.asdict(extractor.config) if dataclasses.is_dataclass(extractor.config) else {}
    described = {"model": extractor.name, "config": config, "class": type(extractor).__qualname__}
    if extractor.random_weights:
        described["random"] = uuid.uuid4().hex
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _image_key(path: Path) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class FeatureStore:
    """Per-image features of one extractor.

    Args:
        extractor: the model.
        mode: ``memory``, ``disk`` or ``auto`` (disk when ``cache_dir`` is given or when all
            images' features would pass ``memory_limit`` bytes, else memory).
        cache_dir: where disk features live (kept, reused by later runs); ``None`` with disk mode:
            a temporary folder removed by :meth:`close`.
        batch_size: images per extractor call.
        progress: show a progress bar while extracting.
    """

    def __init__(self, extractor: Extractor, *, mode: CacheMode = "auto", cache_dir: str | Path | None = None,
                 batch_size: int = 8, progress: bool = True, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        if mode not in CACHE_MODES:
            raise InputError(f"feature cache must be one of {CACHE_MODES}, got {mode!r}")
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.extractor, self.batch_size, self.progress = extractor, batch_size, progress
        self.memory_limit = memory_limit
        self.mode: str = "disk" if (mode == "disk" or (mode == "auto" and cache_dir is not None)) else mode
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._folder: Path | None = None
        self._temporary: Path | None = None
        self._memory: dict[_Key, _Entry] = {}
        self._recent: OrderedDict[_Key, _Entry] = OrderedDict()
        self.computed = 0  # images whose features this store computed (the rest came from disk)
        self.upsampled_limit = DEFAULT_UPSAMPLED_LIMIT
        self._upsampled: OrderedDict[tuple[_Key, int | None], FeatureMap] = OrderedDict()
        self._upsampled_bytes = 0

    # --- disk layout -----------------------------------------------------------------------

    @property
    def folder(self) -> Path | None:
        """The disk cache folder in use (``None`` in memory mode)."""
        return self._folder

    def _open_folder(self) -> Path:
        if self._folder is None:
            if self._cache_dir is None:
                self._temporary = Path(tempfile.mkdtemp(prefix="semcorr-features-"))
                base = self._temporary
            else:
                base = self._cache_dir
            self._folder = base / fingerprint(self.extractor)
            try:
                self._folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(f"{self._folder}: cannot create the feature cache ({error})") from None
        return self._folder

    def _file(self, key: _Key) -> Path:
        image, flipped = key
        return self._open_folder() / f"{_image_key(image)}{'-hflip' if flipped else ''}.safetensors"

    def _write(self, key: _Key, entry: _Entry) -> None:
        features, geometry, norms = entry
        metadata = {"geometry": json.dumps(dataclasses.asdict(geometry)), "image": str(key[0]),
                    "flipped": str(key[1])}
        tensors = {"features": features.contiguous(), "norms": norms.contiguous()}
        write_atomically(self._file(key), safetensors_bytes(tensors, metadata=metadata))

    def _read(self, key: _Key) -> _Entry:
        path, image = self._file(key), key[0]
        try:
            with safe_open(str(path), framework="pt") as handle:
                features, norms = handle.get_tensor("features"), handle.get_tensor("norms")
                fields = json.loads(handle.metadata()["geometry"])
        except Exception as error:  # a damaged file: say which, and how to recover
            raise InputError(f"{path}: unreadable feature cache file for {image} ({error}); delete it and rerun") from None
        geometry = ImageGeometry(**{k: tuple(v) for k, v in fields.items()})
        return features, geometry, norms

    # --- public API ------------------------------------------------------------------------

    def _has(self, key: _Key) -> bool:
        return key in self._memory if self.mode == "memory" else self._file(key).is_file()

    def compute(self, images: Sequence[Path], *, flipped: Sequence[Path] = ()) -> None:
        """Extract (batched) the features of every image not stored yet.

        Args:
            images: image files.
            flipped: image files whose mirror images (left to right) are needed too, e.g. the
                sources of pose-aligned pairs; read back with ``flipped=True``.
        """
        keys = list(dict.fromkeys([(Path(i), False) for i in images] + [(Path(i), True) for i in flipped]))
        missing = [key for key in keys if self.mode == "auto" or not self._has(key)]
        with tqdm(total=len(missing), desc="features", unit="img", disable=not self.progress) as bar:
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                fmap = self.extractor.extract([flip_image(load_image(image)) if flip else image
                                               for image, flip in chunk])
                features = fmap.features.to("cpu", torch.float16)
                norms = fmap.norms.to("cpu", torch.float32)
                if self.mode == "auto":  # decide from the size of the first batch
                    per_image = features[0].numel() * features.element_size()
                    self.mode = "disk" if per_image * len(keys) > self.memory_limit else "memory"
                for key, feature, geometry, norm in zip(chunk, features, fmap.geometries, norms):
                    if self.mode == "memory":
                        self._memory[key] = (feature.clone(), geometry, norm.clone())
                    else:
                        self._write(key, (feature, geometry, norm))
                self.computed += len(chunk)
                bar.update(len(chunk))

    def get(self, image: Path, *, flipped: bool = False) -> tuple[Tensor, ImageGeometry]:
        """(C, h, w) float16 features and the geometry of one image (of its mirror image if ``flipped``)."""
        features, geometry, _ = self._entry((Path(image), bool(flipped)))
        return features, geometry

    def _entry(self, key: _Key) -> _Entry:
        if self.mode == "memory":
            if key not in self._memory:
                raise KeyError(f"no features computed for {key[0]}{' (flipped)' if key[1] else ''}")
            return self._memory[key]
        if key in self._recent:
            self._recent.move_to_end(key)
            return self._recent[key]
        entry = self._read(key)
        self._recent[key] = entry
        if len(self._recent) > _LRU_SIZE:
            self._recent.popitem(last=False)
        return entry

    def _one(self, image: _Key, grid: int | None) -> FeatureMap:
        """The map of one image: float32 L2-normalised features on the device, upsampled to ``grid``
        (cached); on the native grid (``grid`` None) with its norms."""
        key = (image, grid)
        if key in self._upsampled:
            self._upsampled.move_to_end(key)
            return self._upsampled[key]
        features, geometry, norms = self._entry(image)
        device = self.extractor.device
        features = torch.nn.functional.normalize(features.to(device, torch.float32), dim=0)
        fmap = FeatureMap(features[None], (geometry,), self.extractor.name, self.extractor.random_weights,
                          norms[None].to(device)).upsample(grid)
        self._upsampled[key] = fmap
        self._upsampled_bytes += fmap.features.numel() * fmap.features.element_size()
        while self._upsampled_bytes > self.upsampled_limit and len(self._upsampled) > 1:
            _, dropped = self._upsampled.popitem(last=False)
            self._upsampled_bytes -= dropped.features.numel() * dropped.features.element_size()
        return fmap

    def feature_map(self, images: Sequence[Path], grid: int | None = None, *, flipped: bool = False) -> FeatureMap:
        """The :class:`FeatureMap` (float32, L2-normalised, on the extractor's device) of stored
        images (of their mirror images if ``flipped``), upsampled to a ``grid`` x ``grid`` grid as
        :meth:`FeatureMap.upsample` does; on the native grid (``None``) it carries the raw norms.

        Upsampled maps of recently used images are kept (up to ``upsampled_limit`` bytes), so an
        image that appears in many pairs is upsampled once.
        """
        maps = [self._one((Path(image), bool(flipped)), grid) for image in images]
        norms = torch.cat([m.norms for m in maps]) if all(m.norms is not None for m in maps) else None
        return FeatureMap(torch.cat([m.features for m in maps]), tuple(m.geometries[0] for m in maps),
                          self.extractor.name, self.extractor.random_weights, norms)

    def close(self) -> None:
        """Drop memory features; remove a temporary disk cache."""
        self._memory.clear()
        self._recent.clear()
        self._upsampled.clear()
        self._upsampled_bytes = 0
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None
            self._folder = None

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
