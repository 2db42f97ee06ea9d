"""AP-10K (Yu et al., NeurIPS 2021 Datasets) annotations: the animals of GeoAware-SC's benchmark.

GeoAware-SC (Zhang et al., CVPR 2024) turned AP-10K's animal keypoints into three pair sets
(:mod:`semcorr.data.ap10k_pairs` reads or rebuilds them). This module reads the annotated animals
they are made of, from either layout:

* **GeoAware-SC's prepared layout**: ``ImageAnnotation/<family>/<species>/<id>.json`` with
  ``JPEGImages/<family>/<species>/<id>.jpg`` (:func:`prepared_instance`).
* **COCO-style keypoint json** (the official ``annotations/ap10k-{train,test,val}-split1.json``
  with images in ``data/``, or any COCO keypoint json with its images beside it; :func:`read_coco`).

Keypoints are COCO ``[x, y, v]`` triplets used as given; a keypoint is visible when ``v > 0`` and
counts when visible in both images. Boxes are COCO ``[x, y, w, h]`` as ``(x, y, x + w, y + h)``;
PCK uses the target box's longer side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._moved import renamed_names
from ..errors import InputError
from ..fileio import read_json
from .pairs import Pair, require

_OFFICIAL = ("ap10k-train-split1.json", "ap10k-test-split1.json", "ap10k-val-split1.json")
_IMAGE_FOLDERS = ("data", ".", "images", "JPEGImages")


@dataclass(frozen=True, eq=False)
class Instance:
    """One annotated animal.

    Attributes:
        id: the annotation id (in GeoAware-SC's prepared files: the image id, as their merge leaves it).
        image: the image file (not checked until a pair uses it).
        keypoints: (K, 3) float32 COCO ``x, y, v``.
        box: (4,) float32 ``x1, y1, x2, y2``.
        size: (H, W) of the image.
        species, family: the category name and supercategory.
        source: the annotation file.
        image_id: the COCO image id (GeoAware-SC's crowd list names images); None where unknown.
    """

    id: int
    image: Path
    keypoints: np.ndarray
    box: np.ndarray
    size: tuple[int, int]
    species: str
    family: str
    source: Path
    image_id: int | None = None


def parse_instance(annotation: Any, image: Any, category: Any, path: Path, image_path: Path) -> Instance:
    """An :class:`Instance` from a COCO annotation, its image entry and its category entry."""
    where = f"{path}: annotation {annotation.get('id', '?')}" if isinstance(annotation, dict) else str(path)
    keypoints = np.asarray(require(annotation, "keypoints", where), dtype=np.float32)
    if keypoints.ndim != 1 or keypoints.size % 3 or not np.isfinite(keypoints).all():
        raise InputError(f"{where}: field 'keypoints' must be a flat list of x, y, v triplets")
    box = np.asarray(require(annotation, "bbox", where), dtype=np.float32).reshape(-1)
    if box.shape != (4,):
        raise InputError(f"{where}: field 'bbox' must be [x, y, width, height]")
    size = (int(require(image, "height", where)), int(require(image, "width", where)))
    return Instance(
        id=int(require(annotation, "id", where)),
        image=image_path,
        keypoints=keypoints.reshape(-1, 3),
        box=np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]], np.float32),
        size=size,
        species=str(require(category, "name", where)),
        family=str(category.get("supercategory") or "animal"),
        source=path,
        image_id=int(annotation["image_id"]) if "image_id" in annotation else None,
    )


def read_coco(paths: list[Path], image_root: Path) -> list[list[Instance]]:
    """Instances of COCO keypoint files merged in order, grouped per image (annotation order).

    Images are looked for in ``data/``, the folder itself, ``images/`` and ``JPEGImages/`` of
    ``image_root``.
    """
    images: dict[int, tuple[dict, Path]] = {}
    categories: dict[int, dict] = {}
    annotations: list[tuple[dict, Path]] = []
    for path in paths:
        data = read_json(path)
        for entry in require(data, "images", path):
            images.setdefault(int(require(entry, "id", f"{path}: image entry")), (entry, path))
        for entry in data.get("categories") or []:
            categories.setdefault(int(require(entry, "id", f"{path}: category entry")), entry)
        annotations += [(entry, path) for entry in require(data, "annotations", path)]
    groups: dict[int, list[Instance]] = {}
    for annotation, path in annotations:
        where = f"{path}: annotation {annotation.get('id', '?')}" if isinstance(annotation, dict) else str(path)
        image_id = int(require(annotation, "image_id", where))
        category_id = int(require(annotation, "category_id", where))
        if image_id not in images:
            raise InputError(f"{where}: image_id {image_id} is not among the 'images'")
        if category_id not in categories:
            raise InputError(f"{where}: category_id {category_id} is not among the 'categories'")
        entry, _ = images[image_id]
        name = str(require(entry, "file_name", f"{path}: image {image_id}"))
        image_path = next(
            (image_root / folder / name for folder in _IMAGE_FOLDERS if (image_root / folder / name).is_file()),
            image_root / "data" / name,
        )
        groups.setdefault(image_id, []).append(
            parse_instance(annotation, entry, categories[category_id], path, image_path)
        )
    return list(groups.values())


def coco_files(root: Path) -> tuple[list[Path], Path]:
    """The COCO json files of ``root`` (official split files merged train, test, val, as GeoAware-SC
    does) and the folder their images are relative to; ``root`` may be a json file."""
    if root.is_file():
        return [root], root.parent
    official = [root / "annotations" / name for name in _OFFICIAL]
    if all(path.is_file() for path in official):
        return official, root
    found = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    if not found:
        raise InputError(
            f"{root}: no AP-10K annotations (expected PairAnnotation/ from GeoAware-SC, "
            f"annotations/ap10k-*-split1.json, or a COCO keypoint .json)"
        )
    return found, root


def make_pair(source: Instance, target: Instance, category: str, subset: str, pair_id: str | None = None) -> Pair:
    """The :class:`Pair` of two instances with the same keypoint list."""
    if len(source.keypoints) != len(target.keypoints):
        raise InputError(
            f"{source.source} / {target.source}: annotations {source.id} and {target.id} have "
            f"{len(source.keypoints)} and {len(target.keypoints)} keypoints"
        )
    for instance in (source, target):
        if not instance.image.is_file():
            raise InputError(f"{instance.source}: image {instance.image} of annotation {instance.id} not found")
    return Pair(
        id=pair_id or f"{source.id}-{target.id}:{category}",
        benchmark=f"ap10k-{subset}",
        category=category,
        source_image=source.image,
        target_image=target.image,
        source_points=source.keypoints[:, :2],
        target_points=target.keypoints[:, :2],
        source_visible=source.keypoints[:, 2] > 0,
        target_visible=target.keypoints[:, 2] > 0,
        keypoint_ids=np.arange(len(source.keypoints)),
        source_box=source.box,
        target_box=target.box,
        source_size=source.size,
        target_size=target.size,
        flags={
            "source_species": source.species,
            "target_species": target.species,
            "source_family": source.family,
            "target_family": target.family,
        },
    )


def prepared_instance(path: Path, root: Path, cache: dict[Path, Instance]) -> Instance:
    """An instance of GeoAware-SC's ``ImageAnnotation/<family>/<species>/<id>.json``."""
    if path not in cache:
        data = read_json(path)
        relative = path.relative_to(root / "ImageAnnotation")
        image = (root / "JPEGImages" / relative).with_suffix(".jpg")
        category = {
            "name": data.get("name") or relative.parent.name,
            "supercategory": data.get("supercategory") or relative.parent.parent.name,
        }
        cache[path] = parse_instance(data, data, category, path, image)
    return cache[path]


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
