"""A folder of per-image teacher features: one fp16 safetensors file per image, written atomically.

Layout::

    DIR/config.json                      the teacher's identity (name, full config, random weights)
    DIR/entries/ab/ab12...ef.safetensors  one image: tensor "features" (C, h, w) float16, and
                                          metadata {key, original_size, identity}
    DIR/errors-rank{R}.jsonl             images that could not be read (one JSON line each)

Why one file per image rather than HDF5 or multi-image shards: an entry is about 4 MB (2048 x
31 x 31 x 2 bytes), so per-file overhead is negligible, and one file per image makes every
property the cache needs trivial and robust. Writing is crash-safe (the bytes go to a temporary
file that is fsynced and then ``os.replace``-d into place, so a killed process leaves either the
whole entry or none); resuming is a file-existence check; any number of processes on any number
of machines can fill one cache on a shared file system without locks (each writes only its own
entries, and an entry written twice is replaced atomically by identical bytes); readers can open
entries while writers run. HDF5 allows a single writer per file and a crash mid-write can damage
the whole file; shards would lose the unfinished shard on a crash and need an index. The file
name is the SHA-1 of the image key, fanned out over 256 folders to keep folders small.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes
from torch import Tensor

from ..errors import CheckpointError, InputError
from ..fileio import make_folder, read_versioned_json, remove_stale_temporaries, temporary_path, write_atomically

FORMAT = "semcorr-teacher-cache"
VERSION = 1


def entry_name(key: str) -> str:
    """The SHA-1 hex digest of an image key: the entry's file stem."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


def rank_of(key: str, world_size: int) -> int:
    """Which of ``world_size`` processes caches ``key`` (a stable hash: no overlap, no gap)."""
    return int(entry_name(key)[:12], 16) % world_size


def _canonical(value: Any) -> Any:
    """JSON-normalised value (tuples become lists), for comparing identities."""
    return json.loads(json.dumps(value, sort_keys=True))


def identity_digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_canonical(identity), sort_keys=True).encode()).hexdigest()[:16]


def _differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ, e.g. ``["config.sdxl.timesteps"]``."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        found = []
        for key in sorted(set(stored) | set(wanted)):
            found += _differences(stored.get(key), wanted.get(key), f"{prefix}{key}.")
        return found
    return [] if stored == wanted else [f"{prefix[:-1] or 'identity'} ({stored!r} -> {wanted!r})"]


class TeacherCache:
    """Read (and fill) a teacher-feature cache folder.

    >>> cache = TeacherCache("coco-teacher")          # doctest: +SKIP
    >>> cache.get("train2017/000000000009.jpg").shape  # doctest: +SKIP
    torch.Size([2048, 31, 31])
    """

    def __init__(self, root: str | os.PathLike) -> None:
        """Open an existing cache (raises :class:`InputError` if ``root`` holds none)."""
        self.root = Path(root)
        config_file = self.root / "config.json"
        if not config_file.is_file():
            raise InputError(f"{self.root}: not a teacher cache (no config.json); "
                             "fill one with `semcorr cache-teacher`")
        self.config: dict[str, Any] = read_versioned_json(config_file, FORMAT, VERSION, "cache")
        self.identity: dict[str, Any] = self.config["identity"]
        self.digest: str = self.config["identity_digest"]

    @classmethod
    def create(cls, root: str | os.PathLike, identity: dict[str, Any]) -> "TeacherCache":
        """Open ``root`` for writing features of the teacher described by ``identity``, creating it
        if needed; refuses a cache made with another teacher or config."""
        root = Path(root)
        make_folder(root / "entries")
        identity = _canonical(identity)
        config = {"format": FORMAT, "version": VERSION, "dtype": "float16", "identity": identity,
                  "identity_digest": identity_digest(identity),
                  "layout": "entries/<sha1(key)[:2]>/<sha1(key)>.safetensors, tensor 'features' (C, h, w)"}
        temporary = temporary_path(root / "config.json")
        temporary.write_text(json.dumps(config, indent=2) + "\n")
        try:
            os.link(temporary, root / "config.json")  # atomic create-if-absent, also across machines
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: exclusive creation instead
            with contextlib.suppress(FileExistsError), open(root / "config.json", "x") as handle:
                handle.write(temporary.read_text())
        finally:
            temporary.unlink()
        cache = cls(root)
        if cache.identity != identity:
            changed = "; ".join(_differences(cache.identity, identity)[:4])
            raise InputError(f"{root}: holds features of another teacher or config ({changed}); "
                             "use another --out folder, or delete this one to start over")
        return cache

    # --- entries -------------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Where the entry of ``key`` lives (whether or not it exists)."""
        name = entry_name(key)
        return self.root / "entries" / name[:2] / f"{name}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def _open(self, key: str) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise KeyError(f"{self.root}: no features cached for image {key!r}")
        return path

    def _metadata(self, key: str, path: Path) -> dict[str, str]:
        try:
            with safe_open(str(path), "pt") as handle:
                metadata = handle.metadata() or {}
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: unreadable cache entry for {key!r} ({error})") from None
        if metadata.get("key") != key or metadata.get("identity") != self.digest:
            raise CheckpointError(f"{path}: entry does not belong to image {key!r} of this cache's teacher")
        return metadata

    def get(self, key: str, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> Tensor:
        """The features of image ``key``: (C, h, w), float16 as stored unless ``dtype`` is given."""
        path = self._open(key)
        self._metadata(key, path)
        try:
            features = load_file(str(path), device=str(device))["features"]
        except (SafetensorError, OSError, KeyError) as error:
            raise CheckpointError(f"{path}: unreadable cache entry for {key!r} ({error})") from None
        return features if dtype is None else features.to(dtype)

    def original_size(self, key: str) -> tuple[int, int]:
        """(H, W) of the original image of ``key``."""
        height, width = self._metadata(key, self._open(key))["original_size"].split(",")
        return int(height), int(width)

    def entry_paths(self) -> Iterator[Path]:
        """Every complete entry file (temporary files excluded)."""
        return (p for p in sorted((self.root / "entries").glob("*/*.safetensors")))

    def keys(self) -> list[str]:
        """The image keys of every entry (reads each entry's header)."""
        keys = []
        for path in self.entry_paths():
            try:
                with safe_open(str(path), "pt") as handle:
                    keys.append((handle.metadata() or {})["key"])
            except (SafetensorError, OSError, KeyError) as error:
                raise CheckpointError(f"{path}: unreadable cache entry ({error})") from None
        return keys

    def __len__(self) -> int:
        return sum(1 for _ in self.entry_paths())

    def nbytes(self) -> int:
        """Bytes of all entries on disk."""
        return sum(p.stat().st_size for p in self.entry_paths())

    # --- writing -------------------------------------------------------------------------------

    def put(self, key: str, features: Tensor, original_size: tuple[int, int]) -> int:
        """Store (C, h, w) features of image ``key`` atomically as float16; returns the bytes written."""
        if features.ndim != 3:
            raise ValueError(f"features must be (C, h, w), got shape {tuple(features.shape)}")
        metadata = {"key": key, "original_size": f"{int(original_size[0])},{int(original_size[1])}",
                    "identity": self.digest}
        data = save_bytes({"features": features.detach().to("cpu", torch.float16).contiguous()}, metadata=metadata)
        path = self.path(key)
        path.parent.mkdir(exist_ok=True)
        write_atomically(path, data)
        return len(data)

    def remove_stale_temporary_files(self) -> int:
        """Delete temporary files left by killed processes of this machine; returns how many."""
        return remove_stale_temporaries(self.root.glob("entries/*/.*.tmp"))
