"""Reading a 3D pair file back: :class:`PairFile`, random access to its pairs (e.g. for training).

    from semcorr.threed import open_3d_pairs
    with open_3d_pairs("co3d_pairs.h5") as pairs:
        pair = pairs[0]                      # ViewPair: images, sizes, (N, 2) source_xy / target_xy

The layout is described in :mod:`semcorr.threed.pairfile`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..extras import require_extra
from .correspondence import PairSettings
from .pairfile import ARRAYS, read_pair_file_header, strings_of, text_of


@dataclass(frozen=True, eq=False)
class ViewPair:
    """One (source, target) frame pair of a pair file, with its correspondences.

    Attributes:
        sequence, source_frame, target_frame: names.
        source_image, target_image: image paths (resolved against the root).
        source_size, target_size: (H, W).
        source_xy, target_xy: (N, 2) float32 pixels ``(x, y)``; row i is the same 3D point.
        depth_error: (N,) float32 relative depth disagreement at the target.
    """

    sequence: str
    source_frame: str
    target_frame: str
    source_image: Path
    target_image: Path
    source_size: tuple[int, int]
    target_size: tuple[int, int]
    source_xy: np.ndarray
    target_xy: np.ndarray
    depth_error: np.ndarray


class PairFile:
    """Random access to a pair file's pairs, e.g. as a training dataset (``len``, ``[i]``, iteration).

    Every pair is checked when the file is opened (:func:`check_pair`: finite points inside their
    images), so a damaged file is refused, naming the pair and row, before any training step. The
    HDF5 file is opened again on first access in each process, so instances can be handed to
    data-loader workers.

    Args:
        path: a file written by ``semcorr make-3d-pairs``.
        root: resolve image paths against this folder instead of the one stored in the file.
        min_points: leave out pairs with fewer correspondences (default 1: drop empty pairs).
    """

    def __init__(self, path: str | Path, *, root: str | Path | None = None, min_points: int = 1) -> None:
        h5py = require_extra("h5py", "3D pair files")
        self.path = Path(path)
        self.header = read_pair_file_header(self.path)
        self.settings = PairSettings(**self.header["settings"])
        self.root = Path(root) if root is not None else Path(self.header["root"])
        with h5py.File(self.path, "r") as file:
            names, counts = strings_of(file["index"]), file["counts"][()]
            self.names = [name for name, count in zip(names, counts) if count >= min_points]
            for name in self.names:
                check_pair(self.path, name, file["pairs"][name])
        self._file: Any = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[ViewPair]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int) -> ViewPair:
        name = self.names[index]
        group = self._handle()["pairs"][name]
        sequence_group = group.parent
        sequence, target = name.rsplit("/", 1)
        arrays = {key: group[key][()] for key in ARRAYS}
        return ViewPair(
            sequence=sequence,
            source_frame=text_of(sequence_group.attrs["source_frame"]),
            target_frame=target,
            source_image=self.root / text_of(sequence_group.attrs["source_image"]),
            target_image=self.root / text_of(group.attrs["target_image"]),
            source_size=_size(group.attrs["source_size"]),
            target_size=_size(group.attrs["target_size"]),
            **arrays,
        )

    def _handle(self) -> Any:
        h5py = require_extra("h5py", "3D pair files")
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> PairFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": -1}


def _size(value: Any) -> tuple[int, int]:
    """An (H, W) attribute of the pair file as ints."""
    height, width = (int(v) for v in value)
    return height, width


def check_pair(path: Path, name: str, group: Any) -> None:
    """Refuse a pair of a pair file whose ``source_xy`` or ``target_xy`` is not (N, 2), not finite or
    outside its image (continuous pixels: ``[0, W] x [0, H]``), naming the file, pair and row."""
    damaged = "the file is damaged, make it again with `semcorr make-3d-pairs`"
    count = None
    for key, side in (("source_xy", "source"), ("target_xy", "target")):
        points = np.asarray(group[key][()], dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or (count is not None and len(points) != count):
            raise InputError(
                f"{path}: pair {name}: {key} has shape {points.shape}, not the (N, 2) of its other side; {damaged}"
            )
        count = len(points)
        height, width = _size(group.attrs[f"{side}_size"])
        finite = np.asarray(np.isfinite(points).all(axis=1))
        with np.errstate(invalid="ignore"):
            inside = (
                finite & (points[:, 0] >= 0) & (points[:, 0] <= width) & (points[:, 1] >= 0) & (points[:, 1] <= height)
            )
        if not inside.all():
            row = int(np.flatnonzero(~inside)[0])
            x, y = points[row]
            problem = "is not finite" if not finite[row] else f"lies outside its {width}x{height} {side} image"
            raise InputError(f"{path}: pair {name}, row {row}: {key} ({x:g}, {y:g}) {problem}; {damaged}")


def open_3d_pairs(path: str | Path, *, root: str | Path | None = None, min_points: int = 1) -> PairFile:
    """Open a pair file for reading (see :class:`PairFile`)."""
    return PairFile(path, root=root, min_points=min_points)
