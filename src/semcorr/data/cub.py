"""CUB-200-2011 (Wah et al., 2011) in its official layout, as a correspondence benchmark.

    CUB_200_2011/
      images.txt              <image_id> <class folder>/<file>.jpg
      images/<class folder>/<file>.jpg
      image_class_labels.txt  <image_id> <class_id>
      train_test_split.txt    <image_id> <is_training_image>
      bounding_boxes.txt      <image_id> <x> <y> <width> <height>
      parts/part_locs.txt     <image_id> <part_id> <x> <y> <visible>      (15 parts per image)

Pairs (the sampling of DistillDIFT's evaluation, reproduced exactly):

1. Take the split's images (``is_training_image`` 0 for ``test``, 1 for ``train``).
2. For each class id in ascending order, every unordered pair of its images in ``images.txt``
   order, the earlier image being the source (``itertools.combinations``).
3. Shuffle that list with ``torch.randperm(n, generator=torch.Generator().manual_seed(42))``
   (identical to ``torch.manual_seed(42); torch.randperm(n)``) and keep the first 1,000.

A keypoint counts when it is visible in both images; pairs with none visible in both stay in the
sample (as in the reference) and simply contribute no keypoints. Boxes are ``bounding_boxes.txt``
as ``(x, y, x + width, y + height)``. The category is the class folder name without its number
(``Black_footed_Albatross``). Coordinates are used as given.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .._moved import renamed_names
from ..errors import InputError
from .pairs import ImageSizes, Pair, find_dataset_folder

SPLITS = ("train", "test")
# find_dataset_folder's arguments: the root itself or its CUB_200_2011/ subfolder, whichever holds images.txt
FOLDER = ("CUB_200_2011", "images.txt", "a CUB-200-2011 folder (expected images.txt in it or in CUB_200_2011/)")
DEFAULT_PAIRS = 1000
DEFAULT_SEED = 42
_Value = TypeVar("_Value")


def _read_table(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    """Rows of a whitespace-separated CUB file, each with at least ``len(columns)`` fields."""
    if not path.is_file():
        raise InputError(f"{path}: not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < len(columns):
            raise InputError(
                f"{path}: line {number}: expected {' '.join(f'<{c}>' for c in columns)}, "
                f"missing field '{columns[len(fields)]}'"
            )
        rows.append(fields if columns[-1] != "image_name" else [fields[0], " ".join(fields[1:])])
    return rows


def _numbers(path: Path, row: list[str], columns: tuple[str, ...], number: int) -> list[float]:
    try:
        return [float(v) for v in row[1 : len(columns)]]
    except ValueError:
        raise InputError(f"{path}: line {number}: fields {', '.join(columns[1:])} must be numbers") from None


class _Annotations:
    """The parsed CUB tables, keyed by image id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        images = _read_table(root / "images.txt", ("image_id", "image_name"))
        self.names = {row[0]: row[1] for row in images}
        self.order = [row[0] for row in images]
        self.labels = self._column(root / "image_class_labels.txt", ("image_id", "class_id"), int)
        self.is_train = self._column(root / "train_test_split.txt", ("image_id", "is_training_image"), int)
        path = root / "bounding_boxes.txt"
        columns = ("image_id", "x", "y", "width", "height")
        self.boxes: dict[str, np.ndarray] = {}
        for number, row in enumerate(_read_table(path, columns), start=1):
            x, y, width, height = _numbers(path, row, columns, number)
            self.boxes[row[0]] = np.array([x, y, x + width, y + height], np.float32)
        path = root / "parts" / "part_locs.txt"
        columns = ("image_id", "part_id", "x", "y", "visible")
        parts: dict[str, dict[int, tuple[float, float, bool]]] = {}
        for number, row in enumerate(_read_table(path, columns), start=1):
            part, x, y, visible = _numbers(path, row, columns, number)
            parts.setdefault(row[0], {})[int(part)] = (x, y, visible > 0)
        self.parts = parts
        self.part_ids = sorted({part for image in parts.values() for part in image})

    def _column(self, path: Path, columns: tuple[str, str], kind: type) -> dict[str, int]:
        values = {}
        for number, row in enumerate(_read_table(path, columns), start=1):
            try:
                values[row[0]] = kind(row[1])
            except ValueError:
                raise InputError(f"{path}: line {number}: field '{columns[1]}' must be an integer") from None
        return values

    def need(self, table: dict[str, _Value], image_id: str, path: str) -> _Value:
        if image_id not in table:
            raise InputError(f"{self.root / path}: no entry for image {image_id}")
        return table[image_id]

    def keypoints(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(P, 2) points and (P,) visibility of one image over all part ids."""
        found = self.need(self.parts, image_id, "parts/part_locs.txt")
        rows = [found.get(part, (0.0, 0.0, False)) for part in self.part_ids]
        return np.array([r[:2] for r in rows], np.float32), np.array([r[2] for r in rows], bool)


def candidate_pairs(annotations: _Annotations, split: str) -> list[tuple[str, str]]:
    """Every same-class (source, target) image-id pair of the split, in the reference order."""
    wanted = 1 if split == "train" else 0
    members: dict[int, list[str]] = {}
    for image_id in annotations.order:
        if annotations.need(annotations.is_train, image_id, "train_test_split.txt") == wanted:
            members.setdefault(annotations.need(annotations.labels, image_id, "image_class_labels.txt"), []).append(
                image_id
            )
    return [pair for label in sorted(members) for pair in itertools.combinations(members[label], 2)]


def load_cub(
    root: str | Path, split: str = "test", *, n_pairs: int | None = DEFAULT_PAIRS, seed: int = DEFAULT_SEED
) -> list[Pair]:
    """Random same-class pairs of a CUB-200-2011 split (1,000 test pairs, seed 42, by default).

    Args:
        root: the ``CUB_200_2011`` folder (or its parent).
        split: ``test`` or ``train``.
        n_pairs: how many pairs to sample; ``None``: every candidate pair, unshuffled.
        seed: seed of the ``torch.randperm`` shuffle.
    """
    if split not in SPLITS:
        raise InputError(f"CUB-200-2011 split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = find_dataset_folder(root, *FOLDER)
    annotations = _Annotations(root)
    candidates = candidate_pairs(annotations, split)
    if n_pairs is not None:
        import torch

        order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))[:n_pairs]
        candidates = [candidates[i] for i in order.tolist()]
    sizes = ImageSizes()
    pairs = []
    for source_id, target_id in candidates:
        images = [root / "images" / annotations.names[i] for i in (source_id, target_id)]
        (source_points, source_visible), (target_points, target_visible) = (
            annotations.keypoints(i) for i in (source_id, target_id)
        )
        category = Path(annotations.names[source_id]).parent.name.split(".", 1)[-1]
        pairs.append(
            Pair(
                id=f"{source_id}-{target_id}:{category}",
                benchmark="cub",
                category=category,
                source_image=images[0],
                target_image=images[1],
                source_points=source_points,
                target_points=target_points,
                source_visible=source_visible,
                target_visible=target_visible,
                keypoint_ids=np.asarray(annotations.part_ids) - 1,
                source_box=annotations.need(annotations.boxes, source_id, "bounding_boxes.txt"),
                target_box=annotations.need(annotations.boxes, target_id, "bounding_boxes.txt"),
                source_size=sizes(images[0], root / "images.txt"),
                target_size=sizes(images[1], root / "images.txt"),
                flags={"source_image_id": source_id, "target_image_id": target_id},
            )
        )
    return pairs


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
