"""PF-PASCAL (Ham et al., Proposal Flow, TPAMI 2018) in its official layout.

    PF-dataset-PASCAL/
      JPEGImages/<image>.jpg
      Annotations/<class>/<image>.mat           # kps (K x 2, NaN where absent), bbox (1 x 4)
      test_pairs.csv | test_pairs_pf_pascal.csv # also val_, trn_ (train_) splits; here or in the parent

The pair list is CNNGeometric's split (SCNet's pairs): 299 test, 308 validation pairs. Columns
``source_image, target_image, class, XA, YA, XB, YB``: image paths (relative to the dataset
folder's parent, e.g. ``PF-dataset-PASCAL/JPEGImages/2009_002850.jpg``, or to the folder, or bare
names), the class as 1..20 in :data:`CLASSES` order (or a name), and the keypoints of both images
as ``;``-separated coordinate lists. Where the coordinate columns are absent (the training list),
keypoints come from the annotation files, keeping those present in both images.

Coordinates are MATLAB image coordinates used as given (as the reference scripts do). Boxes come
from the annotation file's ``bbox`` when it exists, else the keypoints' extent
(``flags["box_from"]`` says which). PF-PASCAL's PCK is measured against the target image's size,
``L = max(H, W)`` of the target image (NC-Net, weakalign, CATs, GeoAware-SC), at
alpha = 0.05, 0.1, 0.15.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import InputError
from .pairs import ImageSizes, Pair, box_of_points, dataset_root, read_mat

CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
SPLITS = ("trn", "val", "test")
_SPLIT_NAMES = {"trn": ("trn", "train"), "val": ("val",), "test": ("test",)}
_COLUMNS = ("source_image", "target_image", "class")


def find_pairs_file(root: Path, split: str) -> Path:
    """The split's pair list: ``<split>_pairs.csv`` or ``<split>_pairs_pf_pascal.csv`` in ``root`` or its parent."""
    names = [f"{name}_pairs{suffix}.csv" for name in _SPLIT_NAMES[split] for suffix in ("", "_pf_pascal")]
    for folder in (root, root.parent):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise InputError(f"{root}: no PF-PASCAL pair list ({' or '.join(names[:2])}) in it or its parent")


def _resolve_image(root: Path, name: str, csv_path: Path, line: int) -> Path:
    relative = Path(name.strip())
    for candidate in (root / relative, root.parent / relative, root / "JPEGImages" / relative.name):
        if candidate.is_file():
            return candidate
    raise InputError(f"{csv_path}: line {line}: image {name!r} not found under {root}")


def _coordinates(row: dict[str, str], name: str, csv_path: Path, line: int) -> np.ndarray:
    text = row.get(name)
    if text is None or not text.strip():
        raise InputError(f"{csv_path}: line {line}: missing field '{name}'")
    try:
        return np.asarray([float(v) for v in text.split(";") if v.strip()], dtype=np.float32)
    except ValueError:
        raise InputError(f"{csv_path}: line {line}: field '{name}' must be ';'-separated numbers") from None


def _read_annotation(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(K, 2) keypoints (NaN where absent) and the (4,) box (or None) of a PF-PASCAL ``.mat``."""
    contents = read_mat(path, "kps")
    kps = np.asarray(contents["kps"], dtype=np.float64)
    if kps.ndim != 2 or kps.shape[1] != 2:
        raise InputError(f"{path}: field 'kps' must be K x 2, got shape {kps.shape}")
    box = np.asarray(contents["bbox"], dtype=np.float32).reshape(-1) if "bbox" in contents else None
    return kps.astype(np.float32), box if box is not None and box.shape == (4,) else None


def _class_name(value: str, csv_path: Path, line: int) -> str:
    value = value.strip()
    if value in CLASSES:
        return value
    try:
        index = int(float(value))
    except ValueError:
        index = 0
    if not 1 <= index <= len(CLASSES):
        raise InputError(f"{csv_path}: line {line}: field 'class' must be 1..20 or a PASCAL class name, got {value!r}")
    return CLASSES[index - 1]


def _flip(row: dict[str, str]) -> dict[str, int]:
    """The training list's ``flip`` column (1: the pair is used mirrored), when present and numeric."""
    try:
        return {"flip": int(float(row["flip"]))}
    except (KeyError, TypeError, ValueError):
        return {}


def load_pf_pascal(root: str | Path, split: str = "test") -> list[Pair]:
    """The pairs of a PF-PASCAL split, in the pair list's order (299 for ``test``).

    Args:
        root: the ``PF-dataset-PASCAL`` folder (holding ``JPEGImages/``).
        split: ``test``, ``val`` or ``trn``.
    """
    split = {"train": "trn"}.get(split, split)
    if split not in SPLITS:
        raise InputError(f"PF-PASCAL split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = dataset_root(root, "the PF-dataset-PASCAL folder")
    csv_path = find_pairs_file(root, split)
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [name for name in _COLUMNS if name not in header]
        if missing:
            raise InputError(f"{csv_path}: missing field '{missing[0]}' in the header (columns: {', '.join(header)})")
        rows = list(reader)
    sizes = ImageSizes()
    has_coordinates = all(name in header for name in ("XA", "YA", "XB", "YB"))
    pairs = []
    for index, row in enumerate(rows):
        line = index + 2
        category = _class_name(row["class"] or "", csv_path, line)
        images = [_resolve_image(root, row[name] or "", csv_path, line) for name in ("source_image", "target_image")]
        annotations = [root / "Annotations" / category / f"{image.stem}.mat" for image in images]
        boxes = [_read_annotation(path)[1] if path.is_file() else None for path in annotations]
        if has_coordinates:
            xa, ya, xb, yb = (_coordinates(row, name, csv_path, line) for name in ("XA", "YA", "XB", "YB"))
            if not len(xa) == len(ya) == len(xb) == len(yb):
                raise InputError(
                    f"{csv_path}: line {line}: XA, YA, XB, YB have {len(xa)}, {len(ya)}, {len(xb)}, "
                    f"{len(yb)} values; they must match"
                )
            source_points, target_points = np.stack([xa, ya], 1), np.stack([xb, yb], 1)
            keypoint_ids = np.arange(len(xa))
        else:
            source_kps, target_kps = (_read_annotation(path)[0] for path in annotations)
            count = min(len(source_kps), len(target_kps))
            both = ~np.isnan(source_kps[:count]).any(1) & ~np.isnan(target_kps[:count]).any(1)
            keypoint_ids = np.flatnonzero(both)
            source_points, target_points = source_kps[keypoint_ids], target_kps[keypoint_ids]
        count = len(source_points)
        source_box = boxes[0] if boxes[0] is not None else box_of_points(source_points)
        target_box = boxes[1] if boxes[1] is not None else box_of_points(target_points)
        pairs.append(
            Pair(
                id=f"{index:04d}-{images[0].stem}-{images[1].stem}:{category}",
                benchmark="pf-pascal",
                category=category,
                source_image=images[0],
                target_image=images[1],
                source_points=source_points,
                target_points=target_points,
                source_visible=np.ones(count, bool),
                target_visible=np.ones(count, bool),
                keypoint_ids=keypoint_ids,
                source_box=source_box,
                target_box=target_box,
                source_size=sizes(images[0], csv_path),
                target_size=sizes(images[1], csv_path),
                flags={"box_from": "annotation" if boxes[1] is not None else "keypoints", **_flip(row)},
            )
        )
    return pairs
