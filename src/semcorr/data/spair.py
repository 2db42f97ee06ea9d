"""SPair-71k (Min et al., 2019) in its official layout.

    SPair-71k/
      JPEGImages/<category>/<image>.jpg
      PairAnnotation/{trn,val,test}/<pair>.json
      Layout/{large,small}/{trn,val,test}.txt     # one pair name a line: 000167-2008_007604-2009_001056:aeroplane

Each pair file holds ``src_imname``, ``trg_imname``, ``category``, ``src_kps`` / ``trg_kps``
(the N keypoints annotated in both images, as ``[x, y]``), ``kps_ids``, ``src_bndbox`` /
``trg_bndbox`` (``x1, y1, x2, y2``), ``src_imsize`` / ``trg_imsize`` (``[W, H, C]``) and the
difficulty flags ``mirror``, ``viewpoint_variation``, ``scale_variation``, ``truncation`` and
``occlusion`` (plus ``src_pose``, ``trg_pose``, ``pair_id``), all kept in :attr:`Pair.flags`.

The test split is 12,234 pairs in 18 categories (``Layout/large/test.txt``); the small layout
is the subset of Hyperpixel Flow (2,438 test pairs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._moved import renamed_names
from ..errors import InputError
from ..fileio import read_json
from .pairs import ImageSizes, Pair, as_box, as_points, check_image, find_dataset_folder, require

SPLITS = ("trn", "val", "test")
# find_dataset_folder's arguments: the root itself or its SPair-71k/ subfolder, whichever holds PairAnnotation/
FOLDER = (
    "SPair-71k",
    "PairAnnotation",
    "an SPair-71k folder (expected PairAnnotation/ and JPEGImages/ in it or in its SPair-71k/ subfolder)",
)
LAYOUTS = ("large", "small")
_SPLIT_ALIASES = {"train": "trn", "validation": "val"}
_FLAG_FIELDS = (
    "mirror",
    "viewpoint_variation",
    "scale_variation",
    "truncation",
    "occlusion",
    "src_pose",
    "trg_pose",
    "pair_id",
)


def pair_names(root: Path, split: str, layout: str | None) -> list[str]:
    """Pair names of a split: from ``Layout/<layout>/<split>.txt`` when present (``large`` by
    default), else every ``PairAnnotation/<split>/*.json`` in sorted order."""
    if layout is not None and layout not in LAYOUTS:
        raise InputError(f"SPair-71k layout must be one of {LAYOUTS}, got {layout!r}")
    listing = root / "Layout" / (layout or "large") / f"{split}.txt"
    if listing.is_file():
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if layout is not None:
        raise InputError(f"{listing}: not found (needed for the {layout!r} layout)")
    folder = root / "PairAnnotation" / split
    if not folder.is_dir():
        raise InputError(f"{folder}: not found; SPair-71k splits are {', '.join(SPLITS)}")
    return sorted(path.stem for path in folder.glob("*.json"))


def load_spair(root: str | Path, split: str = "test", *, layout: str | None = None) -> list[Pair]:
    """The pairs of an SPair-71k split, in layout order.

    Args:
        root: the ``SPair-71k`` folder (or its parent).
        split: ``trn``, ``val`` or ``test``.
        layout: ``large`` (all pairs, the default) or ``small``.
    Returns:
        one :class:`Pair` per pair file; category = the pair's ``category``; every keypoint is
        visible in both images; boxes are ``src_bndbox`` / ``trg_bndbox``.
    """
    split = _SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise InputError(f"SPair-71k split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = find_dataset_folder(root, *FOLDER)
    sizes, seen = ImageSizes(), set[Path]()
    pairs = []
    for name in pair_names(root, split, layout):
        path = root / "PairAnnotation" / split / f"{name}.json"
        pairs.append(_read_pair(root, path, sizes, seen))
    return pairs


def _read_pair(root: Path, path: Path, sizes: ImageSizes, seen: set[Path]) -> Pair:
    data = read_json(path)
    category = str(require(data, "category", path))
    source_image = check_image(root / "JPEGImages" / category / str(require(data, "src_imname", path)), path, seen)
    target_image = check_image(root / "JPEGImages" / category / str(require(data, "trg_imname", path)), path, seen)
    source_points = as_points(require(data, "src_kps", path), "src_kps", path)
    target_points = as_points(require(data, "trg_kps", path), "trg_kps", path)
    if len(source_points) != len(target_points):
        raise InputError(
            f"{path}: field 'src_kps' has {len(source_points)} points but 'trg_kps' has {len(target_points)}"
        )
    count = len(source_points)
    ids = data.get("kps_ids", list(range(count)))
    try:
        keypoint_ids = np.asarray([int(v) for v in ids], dtype=np.int64)
    except (TypeError, ValueError):
        keypoint_ids = np.zeros(0, np.int64)
    if keypoint_ids.shape != (count,):
        raise InputError(f"{path}: field 'kps_ids' must list {count} integer keypoint ids")
    flags = {name: data[name] for name in _FLAG_FIELDS if name in data}
    return Pair(
        id=path.stem,
        benchmark="spair",
        category=category,
        source_image=source_image,
        target_image=target_image,
        source_points=source_points,
        target_points=target_points,
        source_visible=np.ones(count, bool),
        target_visible=np.ones(count, bool),
        keypoint_ids=keypoint_ids,
        source_box=as_box(require(data, "src_bndbox", path), "src_bndbox", path),
        target_box=as_box(require(data, "trg_bndbox", path), "trg_bndbox", path),
        source_size=_size(data, "src_imsize", path, source_image, sizes),
        target_size=_size(data, "trg_imsize", path, target_image, sizes),
        flags=flags,
    )


def _size(data: dict, name: str, path: Path, image: Path, sizes: ImageSizes) -> tuple[int, int]:
    """(H, W) from the image header, checked against SPair's ``[W, H, C]`` field when it is there: an
    annotation whose size disagrees with its image does not belong to it (its keypoints and box
    would be read in another frame), so it is refused."""
    actual = sizes(image, path)
    if name not in data:
        return actual
    value = data[name]
    if not (isinstance(value, list) and len(value) >= 2 and all(isinstance(v, (int, float)) for v in value[:2])):
        raise InputError(f"{path}: field '{name}' must be [width, height, channels]")
    stated = (int(value[1]), int(value[0]))
    if stated != actual:
        raise InputError(
            f"{path}: field '{name}' says {stated[1]}x{stated[0]} pixels, but {image} is "
            f"{actual[1]}x{actual[0]}; the annotation does not fit this image"
        )
    return stated


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
