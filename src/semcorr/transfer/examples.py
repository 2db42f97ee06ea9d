"""Annotated examples for label transfer: read and checked from two formats, one record out.

COCO keypoints (what annotation tools export)::

    {"images": [{"id": 1, "file_name": "cat1.jpg", "width": 640, "height": 480}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": [x, y, v, ...]}, ...],
     "categories": [{"id": 1, "name": "cat", "keypoints": ["left_eye", ...], "skeleton": [[1, 2], ...]}]}

A keypoint with ``v > 0`` is labelled; ``v = 0`` means not labelled (its x, y are ignored). Every
annotation is one example (an image with two annotated animals gives two). The annotations must use
one category with keypoint names; the skeleton (1-based index pairs, as COCO) is optional.

The simple format, one object per image, every image naming the same keypoints (``null`` where a
keypoint is not visible in that image)::

    {"cat1.jpg": {"left_eye": [x, y], "right_eye": [x, y], "nose": null}, ...}

Image names are paths relative to the folders given (by default the examples file's folder, then
the folder being labelled). Every check happens before any model is loaded and fails with one line
naming the file, the image or annotation, and the keypoint.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..fileio import read_json

_ORIENTATION, _TRANSPOSED = 0x0112, (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class KeypointCategory:
    """The category the examples annotate, carried over to the output unchanged.

    Attributes:
        id: its COCO category id (1 for the simple format).
        name: its name (``object`` for the simple format).
        keypoints: the K keypoint names, in order.
        skeleton: pairs of 1-based keypoint indices (COCO's convention).
        supercategory: as given, or ``None``.
    """

    id: int
    name: str
    keypoints: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    supercategory: str | None = None

    def to_coco(self) -> dict[str, Any]:
        """The COCO ``categories`` entry."""
        entry: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.supercategory is not None:
            entry["supercategory"] = self.supercategory
        entry.update(keypoints=list(self.keypoints), skeleton=[list(pair) for pair in self.skeleton])
        return entry


@dataclass(frozen=True)
class Example:
    """One annotated object.

    Attributes:
        name: the image's name as the examples file gives it.
        path: the image file.
        size: (H, W) of the image in pixels.
        points: (K, 2) float64 keypoints (x, y) in its pixels; rows not labelled are 0.
        labelled: (K,) bool, the keypoints given for this example.
    """

    name: str
    path: Path
    size: tuple[int, int]
    points: np.ndarray
    labelled: np.ndarray


@dataclass(frozen=True)
class ExampleSet:
    """The examples of one category, read from ``source``."""

    category: KeypointCategory
    examples: tuple[Example, ...]
    source: Path

    @property
    def num_keypoints(self) -> int:
        return len(self.category.keypoints)


def read_examples(path: str | os.PathLike, image_folders: Sequence[str | os.PathLike] = ()) -> ExampleSet:
    """Read and check an examples file (COCO keypoints or the simple format).

    Args:
        path: the JSON file.
        image_folders: where image names are looked up, in order, after the file's own folder.
    Raises:
        InputError: naming the file and the culprit (an unknown or missing image, a keypoint outside
            its image, keypoint lists that do not match the names, ...).
    """
    path = Path(path)
    data = read_json(path, expect=dict)
    folders = list(dict.fromkeys([path.parent, *map(Path, image_folders)]))
    finder = _ImageFinder(path, folders)
    if "annotations" in data or "images" in data or "categories" in data:
        category, raw = _read_coco(path, data)
    else:
        category, raw = _read_simple(path, data)
    examples = []
    for where, name, points, labelled in raw:
        image, size = finder(name, where)
        for index in np.flatnonzero(labelled):
            x, y = points[index]
            if not (0 <= x <= size[1] and 0 <= y <= size[0]):
                raise InputError(
                    f"{path}: {where}: keypoint {category.keypoints[index]!r} at ({x:g}, {y:g}) lies "
                    f"outside its image {name} ({size[1]}x{size[0]} pixels)"
                )
        if labelled.any():
            examples.append(Example(name, image, size, points, labelled))
    if not examples:
        raise InputError(f"{path}: no labelled keypoints in any example")
    return ExampleSet(category, tuple(examples), path)


class _ImageFinder:
    """Resolves image names against the folders, once each, and reads their sizes from the headers."""

    def __init__(self, source: Path, folders: list[Path]) -> None:
        self.source, self.folders = source, folders
        self.found: dict[str, tuple[Path, tuple[int, int]]] = {}

    def __call__(self, name: str, where: str) -> tuple[Path, tuple[int, int]]:
        if name not in self.found:
            candidates = [Path(name)] if Path(name).is_absolute() else [folder / name for folder in self.folders]
            image = next((c for c in candidates if c.is_file()), None)
            if image is None:
                looked = ", ".join(str(folder) for folder in self.folders)
                what = where if repr(name) in where else f"{where}: image {name!r}"
                raise InputError(f"{self.source}: {what} not found (looked in {looked})")
            try:
                with Image.open(image) as opened:
                    width, height = opened.size
                    if opened.getexif().get(_ORIENTATION, 1) in _TRANSPOSED:  # as load_image shows it
                        width, height = height, width
            except (UnidentifiedImageError, OSError) as error:
                raise InputError(f"{self.source}: {where}: image {image} cannot be read ({error})") from None
            self.found[name] = (image, (height, width))
        return self.found[name]


Raw = tuple[str, str, np.ndarray, np.ndarray]  # (where, image name, (K, 2) points, (K,) labelled)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _field(entry: Any, name: str, path: Path, where: str) -> Any:
    if not isinstance(entry, dict):
        raise InputError(f"{path}: {where} must be a JSON object")
    if name not in entry:
        raise InputError(f"{path}: {where} has no '{name}'")
    return entry[name]


def _integer(entry: Any, name: str, path: Path, where: str) -> int:
    value = _field(entry, name, path, where)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{path}: {where}: '{name}' must be an integer, got {value!r}")
    return value


def _read_category(entry: Any, path: Path) -> KeypointCategory:
    where = f"category {entry.get('id', '?') if isinstance(entry, dict) else '?'}"
    names = _field(entry, "keypoints", path, where)
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        raise InputError(f"{path}: {where}: 'keypoints' must be a non-empty list of keypoint names")
    if len(set(names)) != len(names):
        raise InputError(f"{path}: {where}: 'keypoints' names a keypoint twice")
    skeleton = entry.get("skeleton") or []
    valid = isinstance(skeleton, list) and all(
        isinstance(bone, list) and len(bone) == 2 and all(isinstance(i, int) and 1 <= i <= len(names) for i in bone)
        for bone in skeleton
    )
    if not valid:
        raise InputError(f"{path}: {where}: 'skeleton' must be pairs of 1-based keypoint indices in 1..{len(names)}")
    supercategory = entry.get("supercategory")
    return KeypointCategory(
        _integer(entry, "id", path, where),
        str(_field(entry, "name", path, where)),
        tuple(names),
        tuple((a, b) for a, b in skeleton),
        None if supercategory is None else str(supercategory),
    )


def _read_coco(path: Path, data: dict) -> tuple[KeypointCategory, list[Raw]]:
    lists = {}
    for key in ("images", "annotations", "categories"):
        value = data.get(key)
        if not isinstance(value, list):
            raise InputError(f"{path}: a COCO keypoints file needs a list '{key}'")
        lists[key] = value
    images = {}
    for entry in lists["images"]:
        image_id = _integer(entry, "id", path, "an 'images' entry")
        name = _field(entry, "file_name", path, f"image {image_id}")
        if not isinstance(name, str) or not name:
            raise InputError(f"{path}: image {image_id}: 'file_name' must be a file name")
        images[image_id] = name
    categories = {_integer(entry, "id", path, "a 'categories' entry"): entry for entry in lists["categories"]}
    used: dict[int, KeypointCategory] = {}
    raw: list[Raw] = []
    for number, annotation in enumerate(lists["annotations"]):
        where = f"annotation {annotation.get('id', number) if isinstance(annotation, dict) else number}"
        image_id = _integer(annotation, "image_id", path, where)
        if image_id not in images:
            raise InputError(f"{path}: {where}: image_id {image_id} is not among the 'images' (unknown image)")
        category_id = _integer(annotation, "category_id", path, where)
        if category_id not in categories:
            raise InputError(f"{path}: {where}: category_id {category_id} is not among the 'categories'")
        if category_id not in used:
            used[category_id] = _read_category(categories[category_id], path)
        names = used[category_id].keypoints
        values = _field(annotation, "keypoints", path, where)
        if not (isinstance(values, list) and all(_number(v) for v in values) and len(values) % 3 == 0):
            raise InputError(f"{path}: {where}: 'keypoints' must be a flat list of x, y, v numbers")
        if len(values) != 3 * len(names):
            raise InputError(
                f"{path}: {where}: 'keypoints' has {len(values) // 3} x, y, v triplets but category "
                f"{category_id} names {len(names)} keypoints"
            )
        triplets = np.asarray(values, np.float64).reshape(-1, 3)
        labelled = triplets[:, 2] > 0
        points = np.where(labelled[:, None], triplets[:, :2], 0.0)
        raw.append((f"{where} (image {images[image_id]})", images[image_id], points, labelled))
    if not raw:
        raise InputError(f"{path}: no annotations")
    if len(used) > 1:
        raise InputError(
            f"{path}: the annotations use {len(used)} categories "
            f"({', '.join(c.name for c in used.values())}); transfer one category at a time"
        )
    return next(iter(used.values())), raw


def _read_simple(path: Path, data: dict) -> tuple[KeypointCategory, list[Raw]]:
    if not data:
        raise InputError(
            f'{path}: no examples; expected {{"image.jpg": {{"keypoint": [x, y], ...}}, ...}} or a COCO keypoints file'
        )
    names: list[str] | None = None
    first = ""
    raw: list[Raw] = []
    for image, points in data.items():
        if not isinstance(points, dict) or not points:
            raise InputError(f'{path}: image {image!r}: expected an object {{"keypoint name": [x, y], ...}}')
        if names is None:
            names, first = list(points), image
        elif set(points) != set(names):
            missing, extra = sorted(set(names) - set(points)), sorted(set(points) - set(names))
            detail = "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"extra {', '.join(extra)}" if extra else "",
                )
                if part
            )
            raise InputError(
                f"{path}: image {image!r} names other keypoints than image {first!r} ({detail}); every "
                "image must name the same keypoints (null where one is not visible)"
            )
        coordinates = np.zeros((len(names), 2))
        labelled = np.zeros(len(names), bool)
        for index, name in enumerate(names):
            value = points[name]
            if value is None:
                continue
            if not (isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value)):
                raise InputError(f"{path}: image {image!r}: keypoint {name!r} must be [x, y] or null, got {value!r}")
            coordinates[index], labelled[index] = value, True
        raw.append((f"image {image!r}", image, coordinates, labelled))
    return KeypointCategory(1, "object", tuple(names or ())), raw
