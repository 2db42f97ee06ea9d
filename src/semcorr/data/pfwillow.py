"""PF-WILLOW (Ham et al., Proposal Flow, CVPR 2016) in the Proposal Flow layout.

    PF-WILLOW/                 (or its PF-dataset/ subfolder)
      car(G)/Cars_006a.png  Cars_006a.mat  ...      # 10 subclass folders x 10 images
      ...

Each ``.mat`` holds ``pts_coord``: 2 x 10, the x row then the y row, of the 10 keypoints. The
values are MATLAB image coordinates (pixel centres at 1, 2, ...); like the reference scripts
(CNNGeometric's ``test_pairs_pf.csv``, DIFT, DistillDIFT) we use them as given, which places them
half a pixel right of and below semcorr's continuous convention. The shift is the same in every
image and far below any PCK threshold (PF-WILLOW boxes are about 100-300 px).

The test set is every ordered pair of different images within a subclass: 10 x 9 x 10 = 900
pairs, in sorted subclass then sorted image order. The object box of an image is the extent of
its keypoints, so PCK@bbox uses the longer side of that extent. The category is the object class
(``car``, ``duck``, ``motorbike``, ``winebottle``); the subclass folder is ``flags["subclass"]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .pairs import ImageSizes, Pair, box_of_points, dataset_root, read_mat

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def find_subclasses(root: str | Path) -> list[Path]:
    """The subclass folders (those holding ``.mat`` files) under ``root`` or ``root/PF-dataset``."""
    root = dataset_root(root, "the PF-WILLOW folder")
    for candidate in (root, root / "PF-dataset"):
        if candidate.is_dir():
            folders = sorted(d for d in candidate.iterdir() if d.is_dir() and any(d.glob("*.mat")))
            if folders:
                return folders
    raise InputError(f"{root}: no PF-WILLOW subclass folders (folders of .mat keypoint files) in it")


def read_keypoints(path: Path) -> np.ndarray:
    """(10, 2) ``(x, y)`` from a PF-WILLOW ``.mat`` file's ``pts_coord`` (2 x 10)."""
    contents = read_mat(path, "pts_coord")
    coords = np.asarray(contents["pts_coord"], dtype=np.float64)
    if coords.ndim != 2 or coords.shape[0] != 2 or coords.shape[1] < 1 or not np.isfinite(coords).all():
        raise InputError(
            f"{path}: field 'pts_coord' must be 2 x N finite coordinates (x row, y row), got shape {coords.shape}"
        )
    return coords.T.astype(np.float32)


def _image_of(mat: Path) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        if (candidate := mat.with_suffix(suffix)).is_file():
            return candidate
    raise InputError(f"{mat}: no image beside it ({' or '.join(mat.stem + s for s in _IMAGE_SUFFIXES)})")


def load_pf_willow(root: str | Path, split: str = "test") -> list[Pair]:
    """The 900 PF-WILLOW test pairs (every ordered pair of different images within a subclass).

    Args:
        root: the PF-WILLOW folder.
        split: only ``test`` exists.
    """
    if split != "test":
        raise InputError(f"PF-WILLOW has only a test split, got {split!r}")
    sizes = ImageSizes()
    pairs = []
    for folder in find_subclasses(root):
        images = []
        for mat in sorted(folder.glob("*.mat")):
            points = read_keypoints(mat)
            image = _image_of(mat)
            images.append((mat.stem, image, points, sizes(image, mat)))
        counts = {len(points) for _, _, points, _ in images}
        if len(counts) > 1:
            raise InputError(f"{folder}: images have different numbers of keypoints {sorted(counts)}")
        subclass = folder.name
        category = subclass.split("(")[0]
        for source_name, source_image, source_points, source_size in images:
            for target_name, target_image, target_points, target_size in images:
                if source_name == target_name:
                    continue
                count = len(source_points)
                pairs.append(
                    Pair(
                        id=f"{subclass}/{source_name}-{target_name}",
                        benchmark="pf-willow",
                        category=category,
                        source_image=source_image,
                        target_image=target_image,
                        source_points=source_points,
                        target_points=target_points,
                        source_visible=np.ones(count, bool),
                        target_visible=np.ones(count, bool),
                        keypoint_ids=np.arange(count),
                        source_box=box_of_points(source_points),
                        target_box=box_of_points(target_points),
                        source_size=source_size,
                        target_size=target_size,
                        flags={"subclass": subclass},
                    )
                )
    return pairs
