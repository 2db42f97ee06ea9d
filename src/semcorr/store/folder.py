"""The feature store: a folder of per-image features, one fp16 safetensors file per image.

Layout::

    DIR/config.json                        the extractor's identity (name, class, full config, grid,
                                           random weights) and what the entries hold
    DIR/entries/ab/ab12...ef.safetensors    one image: "features" (C, h, w) float16, optionally
                                           "embedding" (D,) float16; metadata {key, identity, geometry}
    DIR/errors-*.jsonl                     images that could not be read, by the run that met them

Why one file per image rather than HDF5 or multi-image shards: an entry is 0.5 to 4 MB, so
per-file overhead is negligible, and one file per image makes every property a store needs simple
and robust. Writing is crash-safe (:func:`semcorr.fileio.write_atomically`: a temporary file,
fsynced, renamed into place), so a killed process leaves the whole entry or none; any number of
processes on any number of machines fill one store on a shared file system without locks (each
writes its own entries; an entry written twice is replaced atomically by identical bytes); readers
open entries while writers run. HDF5 allows one writer per file and a crash mid-write can damage
the whole file; shards lose the unfinished shard on a crash and need an index. The file name is
the SHA-1 of the image key, fanned out over 256 folders to keep folders small.

An entry counts as present only when it is whole: its size agrees with its header and the header
names its key and this store's extractor (:meth:`FeatureFolder.__contains__`), so a truncated or
foreign file is computed again on resume rather than trusted.

Teacher caches written before this store (``"format": "semcorr-teacher-cache"``, version 1) read
and resume as they are: their entries lack the geometry, which follows from the size of the
original image and the canvas recorded in their config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_bytes
from torch import Tensor

from .._moved import legacy_class_path, renamed_names
from ..errors import CheckpointError, InputError
from ..features.base import Extractor
from ..fileio import cannot_write, make_folder, read_json, remove_stale_temporaries, temporary_path, write_atomically
from ..geometry import ImageGeometry

FORMAT = "semcorr-feature-store"
VERSION = 1
LEGACY_FORMAT = "semcorr-teacher-cache"  # the teacher caches of semcorr before this store
LEGACY_VERSION = 1
LAYOUT = "entries/<sha1(key)[:2]>/<sha1(key)>.safetensors: 'features' (C, h, w) float16 [, 'embedding' (D,) float16]"
MAX_HEADER = 1 << 20  # bytes; a safetensors header of one entry is a few hundred


def entry_name(key: str) -> str:
    """The SHA-1 hex digest of an image key: the entry's file stem."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


def rank_of(key: str, world_size: int) -> int:
    """Which of ``world_size`` processes handles ``key`` (a stable hash: no overlap, no gap)."""
    return int(entry_name(key)[:12], 16) % world_size


def extractor_identity(extractor: Extractor) -> dict[str, Any]:
    """What makes two runs' features comparable: the extractor's name, class, full config, grid and
    whether its weights are random. Stored in the store's config.json. The class is named by the
    path it had when stores were first written (:func:`semcorr._moved.legacy_class_path`), so that
    moving a module does not orphan the stores its extractors filled."""
    cls = type(extractor)
    return {
        "model": extractor.name,
        "class": legacy_class_path(cls.__module__, cls.__qualname__),
        "random_weights": bool(extractor.random_weights),
        "config": dataclasses.asdict(extractor.config),
        "grid": list(extractor.grid_size()),
    }


def _canonical(value: Any) -> Any:
    """JSON-normalised value (tuples become lists), for comparing identities."""
    return json.loads(json.dumps(value, sort_keys=True))


def identity_digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_canonical(identity), sort_keys=True).encode()).hexdigest()[:16]


def _differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ, e.g. ``["config.sdxl.timesteps ([51] -> [51, 101])"]``."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        found = []
        for key in sorted(set(stored) | set(wanted)):
            found += _differences(stored.get(key), wanted.get(key), f"{prefix}{key}.")
        return found
    return [] if stored == wanted else [f"{prefix[:-1] or 'identity'} ({stored!r} -> {wanted!r})"]


def read_entry_header(path: Path) -> dict[str, Any] | None:
    """The safetensors header of an entry file if the file is whole (its size is exactly what the
    header describes), else ``None``. Reads a few hundred bytes, not the tensors."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                return None
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER or 8 + length > size:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    ends = [
        entry.get("data_offsets", [0, 0])[1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict)
    ]
    return header if ends and 8 + length + max(ends) == size else None


class FeatureFolder:
    """A feature store folder: read it, and fill it.

    >>> store = FeatureFolder("coco-teacher")                 # doctest: +SKIP
    >>> store.get("train2017/000000000009.jpg").shape         # doctest: +SKIP
    torch.Size([2048, 31, 31])
    >>> store.geometry("train2017/000000000009.jpg").from_grid(cells, (31, 31))   # doctest: +SKIP

    Reading: :meth:`get` (features), :meth:`embedding`, :meth:`geometry` (maps the grid to the
    original image's pixels), :meth:`keys`, ``key in store`` (a whole entry), ``for key in store``,
    ``len(store)``. Writing: :meth:`create` then :meth:`put`.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        """Open an existing store (:class:`InputError` if ``root`` holds none)."""
        self.root = Path(root)
        config_file = self.root / "config.json"
        if not config_file.is_file():
            raise InputError(
                f"{self.root}: not a feature store (no config.json); fill one with `semcorr extract` "
                "or `semcorr cache-teacher`"
            )
        try:
            self.config: dict[str, Any] = read_json(config_file, expect=dict)
        except InputError as error:
            raise CheckpointError(str(error)) from None
        known = ((FORMAT, VERSION), (LEGACY_FORMAT, LEGACY_VERSION))
        if (self.config.get("format"), self.config.get("version")) not in known:
            raise CheckpointError(
                f"{config_file}: not a {FORMAT} version {VERSION} (nor a {LEGACY_FORMAT} version {LEGACY_VERSION}) "
                "config; written by another program or a newer semcorr"
            )
        self.identity: dict[str, Any] = self.config["identity"]
        self.digest: str = self.config["identity_digest"]
        self.embedding_kind: str | None = self.config.get("embedding")
        self.legacy = self.config["format"] == LEGACY_FORMAT

    @classmethod
    def create(
        cls, root: str | os.PathLike, identity: dict[str, Any], *, embedding: str | None = None
    ) -> FeatureFolder:
        """Open ``root`` for writing features of the extractor described by ``identity`` (see
        :func:`extractor_identity`), creating it if needed. ``embedding`` names the global embedding
        each entry holds (``"class token"``, ``"mean of the cells"``) or ``None`` (features only).

        Refuses a store made with another extractor or config, or holding other contents. Safe to
        call from many processes at once: the config is created once, atomically.
        """
        root = Path(root)
        make_folder(root / "entries")
        identity = _canonical(identity)
        config = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": "float16",
            "identity": identity,
            "identity_digest": identity_digest(identity),
            "embedding": embedding,
            "layout": LAYOUT,
        }
        target = root / "config.json"
        temporary = temporary_path(target)
        try:
            write_atomically(temporary, json.dumps(config, indent=2) + "\n")  # whole and fsynced, then linked
            try:
                os.link(temporary, target)  # atomic create-if-absent, also across machines
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links: exclusive creation instead
                with contextlib.suppress(FileExistsError), open(target, "x") as handle:
                    handle.write(temporary.read_text())
        except OSError as error:
            raise cannot_write(target, error) from None
        finally:
            temporary.unlink(missing_ok=True)
        store = cls(root)
        if store.identity != identity:
            changed = "; ".join(_differences(store.identity, identity)[:4])
            raise InputError(
                f"{root}: holds features of another model or config ({changed}); "
                "use another --out folder, or delete this one to start over"
            )
        if store.embedding_kind != embedding:
            held = f"embeddings ({store.embedding_kind})" if store.embedding_kind else "no embeddings"
            raise InputError(
                f"{root}: holds {held}, this run writes "
                f"{f'embeddings ({embedding})' if embedding else 'none'}; use another --out folder"
            )
        return store

    # --- entries -------------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Where the entry of ``key`` lives (whether or not it exists)."""
        name = entry_name(key)
        return self.root / "entries" / name[:2] / f"{name}.safetensors"

    def _metadata(self, key: str, path: Path) -> dict[str, str] | None:
        """The metadata of ``key``'s entry if it is whole and belongs to ``key`` and this store."""
        header = read_entry_header(path)
        metadata = (header or {}).get("__metadata__") or {}
        if header is None or metadata.get("key") != key or metadata.get("identity") != self.digest:
            return None
        return metadata

    def __contains__(self, key: object) -> bool:
        """Whether a whole entry of ``key`` of this store's extractor is present (size and header checked)."""
        return isinstance(key, str) and self._metadata(key, self.path(key)) is not None

    def missing(self, keys: Iterable[str], *, threads: int = 16) -> list[str]:
        """The ``keys`` without a whole entry, in their order (headers read by ``threads`` threads:
        the check is I/O bound, and on network file systems mostly waiting)."""
        keys = list(keys)
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            present = list(pool.map(self.__contains__, keys))
        return [key for key, held in zip(keys, present) if not held]

    def _checked(self, key: str) -> tuple[Path, dict[str, str]]:
        path = self.path(key)
        if not path.is_file():
            raise KeyError(f"{self.root}: no features stored for image {key!r}")
        metadata = self._metadata(key, path)
        if metadata is None:
            raise CheckpointError(
                f"{path}: damaged entry, or not one of image {key!r} of this store's model; "
                "delete it and rerun the command that filled the store"
            )
        return path, metadata

    def _tensor(self, key: str, name: str, device: str | torch.device) -> Tensor:
        path, _ = self._checked(key)
        try:
            with safe_open(str(path), "pt", device=str(device)) as handle:
                return handle.get_tensor(name)
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: unreadable entry of {key!r} ({error})") from None

    def get(self, key: str, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> Tensor:
        """The features of image ``key``: (C, h, w), float16 as stored unless ``dtype`` is given."""
        features = self._tensor(key, "features", device)
        return features if dtype is None else features.to(dtype)

    def embedding(self, key: str, *, dtype: torch.dtype | None = None) -> Tensor:
        """The global embedding of image ``key``: (D,), float16 as stored unless ``dtype`` is given."""
        if not self.embedding_kind:
            raise InputError(f"{self.root}: holds no embeddings (filled without them)")
        embedding = self._tensor(key, "embedding", "cpu")
        return embedding if dtype is None else embedding.to(dtype)

    def norms(self, key: str) -> Tensor | None:
        """The (1, h, w) float32 raw norms of image ``key``'s cells, or ``None`` where the entry has none."""
        path, _ = self._checked(key)
        try:
            with safe_open(str(path), "pt") as handle:
                return handle.get_tensor("norms") if "norms" in handle.keys() else None
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: unreadable entry of {key!r} ({error})") from None

    def geometry(self, key: str) -> ImageGeometry:
        """How image ``key``'s grid maps to its original pixels (:class:`ImageGeometry`)."""
        path, metadata = self._checked(key)
        if "geometry" in metadata:
            fields = json.loads(metadata["geometry"])
            return ImageGeometry(**{name: tuple(value) for name, value in fields.items()})
        height, width = (int(v) for v in metadata["original_size"].split(","))
        config = self.identity.get("config", {})
        canvas = config.get("dino", config)  # the teacher's grid is its DINOv2 member's
        if "input_size" not in canvas:
            raise CheckpointError(f"{path}: the entry has no geometry and the store's config no input size")
        return ImageGeometry.fit((height, width), canvas["input_size"], canvas.get("resize_mode", "square"))

    def entry_paths(self) -> Iterator[Path]:
        """Every entry file (temporary files excluded), in file-name order."""
        return iter(sorted((self.root / "entries").glob("*/*.safetensors")))

    def __iter__(self) -> Iterator[str]:
        """The image keys of every whole entry (reads each entry's header)."""
        for path in self.entry_paths():
            metadata = (read_entry_header(path) or {}).get("__metadata__") or {}
            if (
                metadata.get("identity") == self.digest
                and "key" in metadata
                and path.stem == entry_name(metadata["key"])
            ):
                yield metadata["key"]

    def keys(self) -> list[str]:
        """The image keys of every whole entry."""
        return list(self)

    def __len__(self) -> int:
        """The number of entry files (whole or not: counting does not read them)."""
        return sum(1 for _ in self.entry_paths())

    def nbytes(self) -> int:
        """Bytes of all entries on disk."""
        return sum(p.stat().st_size for p in self.entry_paths())

    # --- writing -------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        features: Tensor,
        geometry: ImageGeometry,
        *,
        embedding: Tensor | None = None,
        norms: Tensor | None = None,
    ) -> int:
        """Store image ``key``'s (C, h, w) features (and its (D,) embedding, when the store holds
        them) atomically as float16, with its (1, h, w) raw norms as float32 when given (the
        evaluation cache keeps them: :attr:`FeatureMap.norms`); returns the bytes written."""
        if features.ndim != 3:
            raise ValueError(f"features must be (C, h, w), got shape {tuple(features.shape)}")
        if (embedding is None) != (not self.embedding_kind):
            raise ValueError(f"{self.root}: entries {'need' if self.embedding_kind else 'take no'} an embedding")
        tensors = {"features": features.detach().to("cpu", torch.float16).contiguous()}
        if embedding is not None:
            tensors["embedding"] = embedding.detach().to("cpu", torch.float16).reshape(-1).contiguous()
        if norms is not None:
            tensors["norms"] = norms.detach().to("cpu", torch.float32).reshape(1, *features.shape[1:]).contiguous()
        metadata = {"key": key, "identity": self.digest, "geometry": json.dumps(dataclasses.asdict(geometry))}
        path = self.path(key)
        make_folder(path.parent)
        return write_atomically(path, save_bytes(tensors, metadata=metadata))

    def remove_stale_temporary_files(self) -> int:
        """Delete temporary files left by killed writers of this machine; returns how many."""
        return remove_stale_temporaries(self.root.glob("entries/*/.*.tmp"))


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
