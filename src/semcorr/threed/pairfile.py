"""The 3D pair file: HDF5 written resumably and atomically, and read back for training.

Layout (HDF5, one group per (sequence, target frame)):

    /                      attrs: format "semcorr-3d-pairs", version 1, root (the dataset folder image
                           paths are relative to), dataset (reader options, JSON), settings (the
                           PairSettings, JSON; each also as its own attribute), created_by
    /sequences             (S,) str: every sequence in the file, sorted
    /index                 (P,) str: every pair as "<sequence>/<target frame>" (sequences sorted, targets in
                           frame order); its group is /pairs/<sequence>/<target frame>
    /counts                (P,) int64: the number of correspondences of each pair in /index
    /pairs/<sequence>      attrs: frames (the selected frames, the first the source), images (their
                           paths relative to root), sizes ((F, 2) H, W), frame_count (frames in the
                           sequence), source_frame, source_image
    /pairs/<sequence>/<target>   datasets source_xy (N, 2) float32, target_xy (N, 2) float32,
                           depth_error (N,) float32; attrs target_frame, target_image, target_size,
                           source_size

Sequence names may contain ``/`` (CO3D: ``category/sequence``), which nests their groups.
Coordinates are continuous pixels (the image covers [0, W] x [0, H]).

Reading: :mod:`semcorr.threed.pairloader`. Writing (:class:`PairWriter`): each finished sequence
is first written to its own small file in ``<out>.parts/`` (to a temporary name, flushed, then
renamed: a crash leaves either the whole sequence or nothing), and :meth:`PairWriter.finish` merges
those and any earlier ``<out>`` into a temporary HDF5 that is renamed over ``<out>`` in one step. A
run that is killed at any point can be started again: it skips the sequences already in ``<out>`` or
its parts, and ends with the same content as an uninterrupted run. A lock file keeps two runs from
writing one output at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from .._moved import renamed_names
from ..errors import InputError
from ..extras import require_extra
from ..fileio import atomic_file, file_lock, make_folder, read_json, write_atomically, write_json
from .correspondence import Correspondences, PairSettings

FORMAT = "semcorr-3d-pairs"
VERSION = 1
ARRAYS = ("source_xy", "target_xy", "depth_error")


@dataclass(frozen=True, eq=False)
class SequenceEntry:
    """What one sequence contributes to a pair file.

    Attributes:
        sequence: its name.
        frames: names of the selected frames; ``frames[0]`` is the source.
        images: their image paths (relative to the dataset root where they lie below it).
        sizes: their (H, W).
        frame_count: how many frames the sequence has.
        pairs: one :class:`Correspondences` per target, ``frames[1:]`` in order.
    """

    sequence: str
    frames: tuple[str, ...]
    images: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]
    frame_count: int
    pairs: tuple[Correspondences, ...]


def make_header(root: str | Path, dataset: dict[str, Any], settings: PairSettings) -> dict[str, Any]:
    """The identity of a pair file: runs with another header may not add to it."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "root": os.path.abspath(root),
        "dataset": dict(dataset),
        "settings": asdict(settings),
    }


class PairWriter:
    """Adds sequences to a pair file, resumably (see the module docstring).

    Args:
        path: the output ``.h5`` file.
        header: :func:`make_header` of this run; an existing output or parts folder made with
            another header is refused (pass ``overwrite=True`` to start afresh).
        overwrite: delete an existing output and its parts first.
    """

    def __init__(self, path: str | Path, header: dict[str, Any], *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.header = header
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder; give a file name for the pair file")
        make_folder(self.path.parent)
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(
            file_lock(
                self.path.with_name(self.path.name + ".lock"),
                wait=False,
                busy=f"{self.path}: another run is writing it",
            )
        )
        try:
            if overwrite:
                self._remove_all()
            self.done = self._resume()
        except BaseException:
            self._lock.close()
            raise

    def __enter__(self) -> PairWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._lock.close()

    def add(self, entry: SequenceEntry) -> None:
        """Write one sequence to the parts folder, atomically."""
        if entry.sequence in self.done:
            raise ValueError(f"sequence {entry.sequence} is already in {self.path}")
        meta = {
            "sequence": entry.sequence,
            "frames": list(entry.frames),
            "images": list(entry.images),
            "sizes": [list(s) for s in entry.sizes],
            "frame_count": entry.frame_count,
        }
        # name -> array; Any, else mypy would match **arrays against np.savez's allow_pickle too
        arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta))}
        for i, pair in enumerate(entry.pairs):
            arrays.update({f"{name}_{i}": getattr(pair, name) for name in ARRAYS})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomically(self.parts / _shard_name(entry.sequence), buffer.getvalue())
        self.done.add(entry.sequence)

    def finish(self) -> int:
        """Merge the parts (and an earlier output) into the output file; returns its sequence count."""
        h5py = require_extra("h5py", "3D pair files")
        shards = {}
        for shard in sorted(self.parts.glob("*.npz")) if self.parts.is_dir() else []:
            shards[_read_shard_meta(shard)["sequence"]] = shard
        if not shards and self.path.exists():
            self._remove_parts()
            return len(self.done)
        old = h5py.File(self.path, "r") if self.path.exists() else None
        try:
            previous = set(strings_of(old["sequences"])) if old is not None else set()
            with atomic_file(self.path) as temporary, h5py.File(temporary, "w") as new:
                _write_header(new, self.header)
                pairs_group = new.create_group("pairs")
                index: list[tuple[str, int]] = []
                sequences = sorted(previous | set(shards))
                for sequence in sequences:
                    if sequence in previous:
                        index += _copy_sequence(old, pairs_group, sequence)
                    else:
                        index += _write_shard(pairs_group, shards[sequence])
                text = h5py.string_dtype()
                new.create_dataset("sequences", data=np.array(sequences, dtype=object), dtype=text)
                new.create_dataset("index", data=np.array([n for n, _ in index], dtype=object), dtype=text)
                new.create_dataset("counts", data=np.array([c for _, c in index], dtype=np.int64))
        finally:
            if old is not None:
                old.close()
        self._remove_parts()
        return len(sequences)

    # --- resuming ------------------------------------------------------------------------

    def _resume(self) -> set[str]:
        """Clean what a crash left behind, check headers, and return the sequences already written."""
        h5py = require_extra("h5py", "3D pair files")
        done: set[str] = set()
        for stale in self._merge_leftovers():  # a merge that did not finish; the parts are still there
            stale.unlink(missing_ok=True)
        if self.path.exists():
            existing = read_pair_file_header(self.path)
            _check_same(existing, self.header, self.path)
            with h5py.File(self.path, "r") as file:
                done |= set(strings_of(file["sequences"]))
        header_file = self.parts / "header.json"
        if self.parts.is_dir() and header_file.exists():
            _check_same(read_json(header_file), self.header, self.parts)
        self.parts.mkdir(exist_ok=True)
        for leftover in self.parts.glob("*.tmp"):  # parts a killed run was writing (the lock says none runs)
            leftover.unlink()
        write_json(header_file, self.header, indent=1)
        for shard in sorted(self.parts.glob("*.npz")):
            done.add(_read_shard_meta(shard)["sequence"])
        return done

    def _remove_parts(self) -> None:
        if self.parts.is_dir():
            for child in self.parts.iterdir():
                child.unlink()
            self.parts.rmdir()

    def _merge_leftovers(self) -> list[Path]:
        """Temporary outputs of merges that did not finish (this run holds the lock: none is live)."""
        return [self.path.with_name(self.path.name + ".tmp"), *self.path.parent.glob(f".{self.path.name}.*.tmp")]

    def _remove_all(self) -> None:
        self._remove_parts()
        for path in (self.path, *self._merge_leftovers()):
            path.unlink(missing_ok=True)


def read_pair_file_header(path: str | Path) -> dict[str, Any]:
    """The header of a pair file; InputError when it is not one."""
    h5py = require_extra("h5py", "3D pair files")
    path = Path(path)
    try:
        with h5py.File(path, "r") as file:
            attrs = dict(file.attrs)
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except OSError as error:
        raise InputError(f"{path}: not an HDF5 file ({' '.join(str(error).split())})") from None
    if text_of(attrs.get("format", "")) != FORMAT:
        raise InputError(f"{path}: not a semcorr 3D pair file (no format={FORMAT!r} attribute)")
    if int(attrs.get("version", 0)) != VERSION:
        raise InputError(f"{path}: pair file version {attrs.get('version')}, this semcorr reads {VERSION}")
    return {
        "format": FORMAT,
        "version": VERSION,
        "root": text_of(attrs["root"]),
        "dataset": json.loads(text_of(attrs["dataset"])),
        "settings": json.loads(text_of(attrs["settings"])),
    }


# --- helpers ---------------------------------------------------------------------------------


def count_pairs(path: str | Path, *, min_points: int = 1) -> int:
    """How many pairs of a pair file have at least ``min_points`` correspondences, from its index
    alone (no pair is read); InputError when it is not a pair file."""
    read_pair_file_header(path)
    h5py = require_extra("h5py", "3D pair files")
    with h5py.File(path, "r") as file:
        if "counts" not in file:
            raise InputError(f"{path}: a damaged pair file (no /counts)")
        return int((file["counts"][()] >= min_points).sum())


def _check_same(existing: dict[str, Any], wanted: dict[str, Any], where: Path) -> None:
    for key in ("root", "dataset", "settings"):
        if existing.get(key) != wanted.get(key):
            raise InputError(
                f"{where}: was made with other {key} ({existing.get(key)} instead of {wanted.get(key)}); "
                "choose another output or pass --overwrite"
            )


def _write_header(file: Any, header: dict[str, Any]) -> None:
    file.attrs.update(
        {
            "format": FORMAT,
            "version": VERSION,
            "root": header["root"],
            "dataset": json.dumps(header["dataset"], sort_keys=True),
            "settings": json.dumps(header["settings"], sort_keys=True),
            "created_by": f"semcorr {__version__}",
        }
    )
    file.attrs.update(header["settings"])


def _write_shard(pairs_group: Any, shard: Path) -> list[tuple[str, int]]:
    """Write one sequence from its shard; returns its index entries and their point counts."""
    with np.load(shard, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        group = pairs_group.create_group(meta["sequence"])
        frames, images = meta["frames"], meta["images"]
        group.attrs.update(
            {
                "frames": frames,
                "images": images,
                "sizes": np.array(meta["sizes"], dtype=np.int64),
                "frame_count": meta["frame_count"],
                "source_frame": frames[0],
                "source_image": images[0],
            }
        )
        names = []
        for i, target in enumerate(frames[1:]):
            pair = group.create_group(target)
            for key in ARRAYS:
                pair.create_dataset(key, data=data[f"{key}_{i}"], track_times=False)
            pair.attrs.update(
                {
                    "target_frame": target,
                    "target_image": images[i + 1],
                    "target_size": meta["sizes"][i + 1],
                    "source_size": meta["sizes"][0],
                }
            )
            names.append((f"{meta['sequence']}/{target}", len(data[f"source_xy_{i}"])))
    return names


def _copy_sequence(old: Any, pairs_group: Any, sequence: str) -> list[tuple[str, int]]:
    parent, _, leaf = sequence.rpartition("/")
    destination = pairs_group.require_group(parent) if parent else pairs_group
    source = old["pairs"][sequence]
    old.copy(source, destination, name=leaf)
    frames = [text_of(f) for f in source.attrs["frames"]]
    return [(f"{sequence}/{target}", source[target]["source_xy"].shape[0]) for target in frames[1:]]


def _read_shard_meta(shard: Path) -> dict[str, Any]:
    try:
        with np.load(shard, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{shard}: unreadable part ({error}); delete it to regenerate its sequence") from None


def _shard_name(sequence: str) -> str:
    return hashlib.sha1(sequence.encode("utf8")).hexdigest()[:20] + ".npz"


def strings_of(dataset: Any) -> list[str]:
    return [text_of(v) for v in dataset[()]]


def text_of(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
