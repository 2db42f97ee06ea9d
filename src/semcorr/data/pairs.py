"""The record every benchmark loader yields (:class:`Pair`), and the file helpers loaders share.

Coordinates are pixels of the original images, ``(x, y)``, used exactly as the benchmark's
annotation files give them (the reference evaluation scripts do the same; see
:mod:`semcorr.geometry` for the continuous-pixel convention: the image covers ``[0, W] x [0, H]``).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._moved import renamed_names
from ..errors import InputError
from ..extras import require_extra


def _frozen(array: Any, dtype: Any, shape: tuple[int | None, ...], name: str) -> np.ndarray:
    """A read-only copy of ``array`` as ``dtype``, checked against ``shape`` (None: any length)."""
    value = np.array(array, dtype=dtype)
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        raise ValueError(f"Pair.{name} must have shape {shape}, got {value.shape}")
    value.setflags(write=False)
    return value


@dataclass(frozen=True, eq=False)
class Pair:
    """One annotated image pair of a benchmark: what evaluation and supervised training need.

    Row ``i`` of the source and target arrays is the same keypoint (semantic part) in both images.
    Arrays are read-only numpy arrays; construct with lists, arrays or tensors.

    Attributes:
        id: unique within the benchmark split, e.g. ``000167-2008_007604-2009_001056:aeroplane``.
        benchmark: canonical benchmark name, e.g. ``spair``, ``pf-willow``.
        category: the category used for per-category tables (benchmark-specific, see the loaders).
        source_image, target_image: image files.
        source_points: (N, 2) float32 ``(x, y)`` in source-image pixels.
        target_points: (N, 2) float32 ``(x, y)`` in target-image pixels.
        source_visible, target_visible: (N,) bool; where False the point is not annotated in that
            image and its coordinates are meaningless (0). Evaluation counts rows visible in both.
        keypoint_ids: (N,) int64, each row's index in the benchmark's keypoint list for the category.
        source_box, target_box: (4,) float32 ``(x1, y1, x2, y2)`` object boxes in pixels.
        source_size, target_size: ``(H, W)`` of the images in pixels.
        flags: read-only benchmark-specific extras (SPair's ``mirror``, ``viewpoint_variation``...).
    """

    id: str
    benchmark: str
    category: str
    source_image: Path
    target_image: Path
    source_points: np.ndarray
    target_points: np.ndarray
    source_visible: np.ndarray
    target_visible: np.ndarray
    keypoint_ids: np.ndarray
    source_box: np.ndarray
    target_box: np.ndarray
    source_size: tuple[int, int]
    target_size: tuple[int, int]
    flags: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        points = _frozen(self.source_points, np.float32, (None, 2), "source_points")
        count = points.shape[0]
        values = {
            "source_image": Path(self.source_image),
            "target_image": Path(self.target_image),
            "source_points": points,
            "target_points": _frozen(self.target_points, np.float32, (count, 2), "target_points"),
            "source_visible": _frozen(self.source_visible, bool, (count,), "source_visible"),
            "target_visible": _frozen(self.target_visible, bool, (count,), "target_visible"),
            "keypoint_ids": _frozen(self.keypoint_ids, np.int64, (count,), "keypoint_ids"),
            "source_box": _frozen(self.source_box, np.float32, (4,), "source_box"),
            "target_box": _frozen(self.target_box, np.float32, (4,), "target_box"),
            "source_size": tuple(int(v) for v in self.source_size),
            "target_size": tuple(int(v) for v in self.target_size),
            "flags": types.MappingProxyType(dict(self.flags)),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple:
        """Pickle (DataLoader workers, multiprocessing) through the constructor."""
        values = [getattr(self, f.name) for f in fields(self)]
        return (type(self), tuple(dict(v) if isinstance(v, types.MappingProxyType) else v for v in values))

    @property
    def visible(self) -> np.ndarray:
        """(N,) bool: keypoints annotated in both images (the ones evaluation counts)."""
        return self.source_visible & self.target_visible

    @property
    def num_keypoints(self) -> int:
        """How many keypoints count (visible in both images)."""
        return int(self.visible.sum())

    def counted_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(M, 2) source and (M, 2) target points of the M keypoints visible in both images."""
        keep = self.visible
        return self.source_points[keep], self.target_points[keep]


# --- helpers for loaders -------------------------------------------------------------------


# Keypoints this far outside their image (pixels) are annotation errors; closer ones are round-off.
OUTSIDE_TOLERANCE = 1.0


def without_outside_keypoints(pairs: list[Pair]) -> tuple[list[Pair], list[str]]:
    """The pairs with keypoints that lie outside their image marked not visible (so evaluation and
    training leave them out), and one description per such keypoint (for a warning)."""
    checked, found = [], []
    for pair in pairs:
        source_inside = _inside(pair.source_points, pair.source_size) | ~pair.source_visible
        target_inside = _inside(pair.target_points, pair.target_size) | ~pair.target_visible
        if source_inside.all() and target_inside.all():
            checked.append(pair)
            continue
        for side, inside, points, size in (
            ("source", source_inside, pair.source_points, pair.source_size),
            ("target", target_inside, pair.target_points, pair.target_size),
        ):
            for row in np.flatnonzero(~inside):
                x, y = (float(v) for v in points[row])
                found.append(f"pair {pair.id}, {side} keypoint {row} at ({x:g}, {y:g}) in a {size[1]}x{size[0]} image")
        checked.append(
            dataclasses.replace(
                pair,
                source_visible=pair.source_visible & source_inside,
                target_visible=pair.target_visible & target_inside,
            )
        )
    return checked, found


def _inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    x, y = points[:, 0], points[:, 1]
    return (
        (x >= -OUTSIDE_TOLERANCE)
        & (x <= width + OUTSIDE_TOLERANCE)
        & (y >= -OUTSIDE_TOLERANCE)
        & (y <= height + OUTSIDE_TOLERANCE)
    )


def dataset_root(root: str | Path, what: str, *, file_suffix: str | None = None) -> Path:
    """``root`` as a :class:`Path` when it is a folder (or a file ending in ``file_suffix``, where a
    benchmark takes one); the one check every loader makes first, so their messages agree.

    Args:
        what: the folder the benchmark expects, for the message (``"the PF-WILLOW folder"``).

    Raises:
        InputError: ``root`` does not exist (``not found; expected ...``) or is a file (``is a file, not ...``).
    """
    root = Path(root)
    if root.is_file() and (file_suffix is None or root.suffix.lower() != file_suffix):
        raise InputError(f"{root}: is a file, not {what}")
    if not root.exists():
        raise InputError(f"{root}: not found; expected {what}")
    return root


def find_dataset_folder(root: str | Path, folder: str, marker: str, what: str) -> Path:
    """A benchmark's folder: ``root`` itself or ``root/<folder>``, whichever holds ``marker``.

    Args:
        what: the folder and what it holds, for the message (``"a CUB-200-2011 folder (expected ...)"``).

    Raises:
        InputError: ``root`` is a file or missing (:func:`dataset_root`), or neither folder holds ``marker``.
    """
    root = dataset_root(root, what.split(" (")[0])
    for candidate in (root, root / folder):
        if (candidate / marker).exists():
            return candidate
    raise InputError(f"{root}: not {what}")


def read_mat(path: Path, field: str) -> dict[str, Any]:
    """The contents of a MATLAB ``.mat`` file that must hold ``field``; errors name the file and field."""
    scipy_io = require_extra("scipy.io", f"reading {path.name} (a MATLAB annotation file)")

    try:
        contents = scipy_io.loadmat(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except Exception as error:  # scipy raises ValueError, TypeError, MatReadError, ... on bad files
        raise InputError(f"{path}: not a readable MATLAB file ({type(error).__name__}: {error})") from None
    if field not in contents:
        raise InputError(f"{path}: missing field '{field}'")
    return contents


def require(data: Any, name: str, path: Path | str) -> Any:
    """``data[name]`` of a parsed annotation; a missing field is an InputError naming file and field."""
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: expected a JSON object with field '{name}', got {type(data).__name__}")
    if name not in data or data[name] is None:
        raise InputError(f"{path}: missing field '{name}'")
    return data[name]


def as_points(value: Any, name: str, path: Path) -> np.ndarray:
    """(N, 2) float32 from a ``[[x, y], ...]`` field; anything else is an InputError naming the field."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        array = None
    if array is not None and array.size == 0:
        return np.zeros((0, 2), np.float32)
    if array is None or array.ndim != 2 or array.shape[1] != 2 or not np.isfinite(array).all():
        raise InputError(f"{path}: field '{name}' must be a list of [x, y] number pairs")
    return array


def as_box(value: Any, name: str, path: Path) -> np.ndarray:
    """(4,) float32 ``(x1, y1, x2, y2)`` from a field of four numbers."""
    try:
        array = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        array = np.zeros(0, np.float32)
    if array.shape != (4,) or not np.isfinite(array).all():
        raise InputError(f"{path}: field '{name}' must be four numbers")
    return array


def box_of_points(points: np.ndarray) -> np.ndarray:
    """(4,) ``(x1, y1, x2, y2)``: the extent of (N, 2) points (PF-WILLOW's object box)."""
    if len(points) == 0:
        return np.zeros(4, np.float32)
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)


class ImageSizes:
    """(H, W) of image files, read from their headers once each; a missing file names its source."""

    def __init__(self) -> None:
        self._sizes: dict[Path, tuple[int, int]] = {}

    def __call__(self, path: Path, source: Path | str) -> tuple[int, int]:
        path = Path(path)
        if path not in self._sizes:
            from PIL import Image, UnidentifiedImageError

            if not path.is_file():
                raise InputError(f"{source}: image {path} not found")
            try:
                with Image.open(path) as image:
                    width, height = image.size
            except (UnidentifiedImageError, OSError) as error:
                raise InputError(f"{path}: not a readable image ({error})") from None
            self._sizes[path] = (height, width)
        return self._sizes[path]


def check_image(path: Path, source: Path | str, seen: set[Path]) -> Path:
    """``path`` if the image file exists (checked once per path), else an InputError naming ``source``."""
    if path not in seen:
        if not path.is_file():
            raise InputError(f"{source}: image {path} not found")
        seen.add(path)
    return path


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
