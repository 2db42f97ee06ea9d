"""CO3D v2 (Reizenstein et al., 2021) in its official layout, without PyTorch3D.

    <root>/<category>/frame_annotations.jgz       gzipped JSON list of frame annotations
    <root>/<category>/sequence_annotations.jgz    gzipped JSON list of sequence annotations
    <root>/<category>/set_lists/set_lists_<subset>.json   {"train": [[sequence, frame_number, image_path], ...], ...}
    <root>/<category>/<sequence>/images/frame000001.jpg
                                /depths/frame000001.jpg.geometric.png
                                /depth_masks/frame000001.png
                                /masks/frame000001.png

A frame annotation holds ``sequence_name``, ``frame_number``, ``image`` (``path``, ``size`` as
(H, W)), ``depth`` (``path``, ``scale_adjustment``, ``mask_path``), ``mask`` (``path``, ``mass``)
and ``viewpoint`` (``R``, ``T``, ``focal_length``, ``principal_point``, ``intrinsics_format``);
paths are relative to ``<root>``. Sequence annotations hold ``sequence_name``, ``category`` and
``viewpoint_quality_score``.

Decoding, as CO3D's own loader (PyTorch3D's JsonIndexDataset) does it:

* depth PNGs hold IEEE half floats in their 16 bits; depth = half * ``scale_adjustment``, with
  non-finite values set to 0; pixels where the depth mask PNG is 0 are invalid. A depth map of
  another size than the image is resampled to it (nearest neighbour).
* foreground masks hold P(foreground) * 255; foreground where P >= ``mask_threshold`` (0.5).

Cameras (:func:`co3d_camera`) are PyTorch3D's: ``X_cam = X_world @ R + T`` (row vectors) with
camera axes +X left, +Y up, +Z forward, and NDC intrinsics. ``ndc_norm_image_bounds`` (the
default) maps the image to [-1, 1] on both axes; ``ndc_isotropic`` maps the shorter side to
[-1, 1] and keeps the scale equal on both axes. With ``s`` the half-size of the NDC unit in
pixels (``(W/2, H/2)``, or ``min(W, H)/2`` on both axes when isotropic), PyTorch3D's screen
coordinates are ``x = W/2 - s_x * x_ndc``, ``y = H/2 - s_y * y_ndc`` with the image covering
``[0, W] x [0, H]`` and pixel centres at +0.5: semcorr's convention, so no half-pixel shift is due.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..fileio import read_json
from .views import PosedFrame, PosedSequence, check_rigid

FRAME_FILE = "frame_annotations.jgz"
SEQUENCE_FILE = "sequence_annotations.jgz"
INTRINSICS_FORMATS = ("ndc_norm_image_bounds", "ndc_isotropic")
_FLIP_XY = np.diag([-1.0, -1.0, 1.0])  # PyTorch3D camera axes (+X left, +Y up) <-> OpenCV's


def co3d_camera(viewpoint: dict[str, Any], image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A CO3D viewpoint annotation as (K, world_to_camera) in semcorr's conventions.

    Args:
        viewpoint: ``{"R": 3x3, "T": 3, "focal_length": 2, "principal_point": 2,
            "intrinsics_format": ...}`` in PyTorch3D's convention (see the module docstring).
        image_size: (H, W) of the image the intrinsics refer to.
    Returns:
        (3, 3) K in pixels (pixel centres at +0.5) and (4, 4) world-to-camera with OpenCV axes.
    """
    height, width = image_size
    try:
        R = np.asarray(viewpoint["R"], dtype=np.float64).reshape(3, 3)
        T = np.asarray(viewpoint["T"], dtype=np.float64).reshape(3)
        focal = np.broadcast_to(np.asarray(viewpoint["focal_length"], dtype=np.float64), (2,))
        principal = np.asarray(viewpoint["principal_point"], dtype=np.float64).reshape(2)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"viewpoint annotation lacks or garbles R, T, focal_length or principal_point ({error})"
        ) from None
    fmt = str(viewpoint.get("intrinsics_format") or "ndc_norm_image_bounds").lower()
    half = np.array([width / 2.0, height / 2.0])
    if fmt == "ndc_norm_image_bounds":
        scale = half
    elif fmt == "ndc_isotropic":
        scale = np.full(2, half.min())
    else:
        raise InputError(f"unknown intrinsics_format {fmt!r}; expected one of {INTRINSICS_FORMATS}")
    fx, fy = focal * scale
    cx, cy = half - principal * scale
    if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
        raise InputError(f"viewpoint annotation has invalid intrinsics (focal_length {focal.tolist()})")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3] = _FLIP_XY @ R.T
    world_to_camera[:3, 3] = _FLIP_XY @ T
    return K, check_rigid(world_to_camera, "viewpoint R, T")


class CO3D:
    """Reader of CO3D v2 sequences (see the module docstring for the layout and conventions).

    Args:
        root: the dataset root (holding one folder per category), or one category folder.
        categories: only these categories (default: every folder with a ``frame_annotations.jgz``).
        subset: a set-list name (``set_lists/set_lists_<subset>.json``, e.g. ``manyview_dev_0``);
            only the frames it lists are used. Default: every annotated frame.
        split: with ``subset``, only frames of this split (``train``, ``val``, ``test``).
        min_quality: skip sequences whose ``viewpoint_quality_score`` is below this (or unknown).
        mask_threshold: foreground where P(foreground) >= this.
        use_masks: False ignores the foreground masks (every valid-depth pixel is used).
    """

    kind = "co3d"

    def __init__(
        self,
        root: str | Path,
        *,
        categories: Iterable[str] | None = None,
        subset: str | None = None,
        split: str | None = None,
        min_quality: float | None = None,
        mask_threshold: float = 0.5,
        use_masks: bool = True,
    ) -> None:
        root = Path(root)
        if (root / FRAME_FILE).is_file():
            self.root, found = root.parent, [root.name]
        elif root.is_dir():
            self.root = root
            found = sorted(p.parent.name for p in root.glob(f"*/{FRAME_FILE}"))
        else:
            raise InputError(f"{root}: not a folder")
        if not found:
            raise InputError(f"{root}: no <category>/{FRAME_FILE} in it (not a CO3D v2 folder)")
        if categories is not None:
            wanted = list(categories)
            unknown = sorted(set(wanted) - set(found))
            if unknown:
                raise InputError(f"{root}: no category {unknown[0]!r} (found: {', '.join(found)})")
            found = [c for c in found if c in wanted]
        if split is not None and subset is None:
            raise InputError("a CO3D split needs a subset (set list), e.g. subset='manyview_dev_0'")
        self.categories = found
        self.subset, self.split, self.min_quality = subset, split, min_quality
        self.mask_threshold, self.use_masks = float(mask_threshold), bool(use_masks)
        self._cached: tuple[str, dict[str, list[dict[str, Any]]]] | None = None
        self._cached_set_list: tuple[str, dict[str, set[int]]] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subset": self.subset,
            "split": self.split,
            "min_quality": self.min_quality,
            "mask_threshold": self.mask_threshold,
            "use_masks": self.use_masks,
        }

    def sequence_names(self) -> list[str]:
        """``category/sequence_name`` of every sequence (from the sequence annotations when present)."""
        names: list[str] = []
        for category in self.categories:
            listed = self._listed_sequences(category)
            if listed is None:
                listed = set(self._frames(category))
            names += [f"{category}/{name}" for name in listed]
        return sorted(names)

    def sequence(self, name: str) -> PosedSequence:
        category, _, sequence = name.partition("/")
        if category not in self.categories or not sequence:
            raise InputError(f"{self.root}: no sequence named {name!r} (expected category/sequence_name)")
        entries = sorted(self._frames(category).get(sequence, []), key=lambda e: int(e.get("frame_number", 0)))
        where = f"{self.root / category / FRAME_FILE}: sequence {sequence}"
        if self.subset is not None:
            entries = self._restrict_to_set_list(category, sequence, entries, where)
        if not entries:
            raise InputError(f"{where} has no frames")
        frames = [self._frame(entry, where) for entry in entries]
        missing = [
            p
            for f in frames
            for p in (f.image_path, f.depth_path, f.depth_mask_path, f.mask_path)
            if p is not None and not p.is_file()
        ]
        if missing:
            raise InputError(
                f"{where}: annotations list {len(frames)} frames but {len(missing)} of their files "
                f"are missing (first: {missing[0]})"
            )
        return PosedSequence(name, tuple(frames))

    # --- annotations ---------------------------------------------------------------------

    def _frames(self, category: str) -> dict[str, list[dict[str, Any]]]:
        """Frame annotations of a category grouped by sequence name (the last category is cached)."""
        if self._cached is None or self._cached[0] != category:
            grouped: dict[str, list[dict[str, Any]]] = {}
            for entry in read_json(self.root / category / FRAME_FILE, expect=list):
                if not isinstance(entry, dict) or "sequence_name" not in entry:
                    raise InputError(
                        f"{self.root / category / FRAME_FILE}: entries must be frame annotations with a sequence_name"
                    )
                grouped.setdefault(str(entry["sequence_name"]), []).append(entry)
            self._cached = (category, grouped)
        return self._cached[1]

    def _listed_sequences(self, category: str) -> set[str] | None:
        """Sequence names from the set list or the sequence annotations (None: neither applies)."""
        names: set[str] | None = None
        if self.subset is not None:
            names = {str(row[0]) for row in self._set_list(category)}
        path = self.root / category / SEQUENCE_FILE
        if self.min_quality is not None:
            if not path.is_file():
                raise InputError(f"{path}: not found (needed for a minimum viewpoint quality)")
            good = {
                str(e["sequence_name"])
                for e in read_json(path, expect=list)
                if e.get("viewpoint_quality_score") is not None
                and float(e["viewpoint_quality_score"]) >= self.min_quality
            }
            names = good if names is None else names & good
        elif names is None and path.is_file():
            names = {str(e["sequence_name"]) for e in read_json(path, expect=list)}
        return names

    def _set_list(self, category: str) -> list[list[Any]]:
        path = self.root / category / "set_lists" / f"set_lists_{self.subset}.json"
        if not path.is_file():
            raise InputError(f"{path}: not found (unknown subset {self.subset!r} for category {category})")
        data = read_json(path)
        if not isinstance(data, dict):
            raise InputError(f'{path}: expected {{"train": [[sequence, frame_number, path], ...], ...}}')
        if self.split is not None and self.split not in data:
            raise InputError(f"{path}: no split {self.split!r} (has: {', '.join(sorted(data))})")
        splits = [self.split] if self.split is not None else sorted(data)
        return [row for s in splits for row in data[s]]

    def _restrict_to_set_list(
        self, category: str, sequence: str, entries: list[dict[str, Any]], where: str
    ) -> list[dict[str, Any]]:
        if self._cached_set_list is None or self._cached_set_list[0] != category:
            grouped: dict[str, set[int]] = {}
            for row in self._set_list(category):
                grouped.setdefault(str(row[0]), set()).add(int(row[1]))
            self._cached_set_list = (category, grouped)
        wanted = self._cached_set_list[1].get(sequence, set())
        have = {int(e.get("frame_number", -1)) for e in entries}
        absent = sorted(wanted - have)
        if absent:
            raise InputError(
                f"{where}: set list {self.subset} lists {len(wanted)} frames, {len(absent)} of them "
                f"without an annotation (first: frame_number {absent[0]})"
            )
        return [e for e in entries if int(e.get("frame_number", -1)) in wanted]

    def _frame(self, entry: dict[str, Any], where: str) -> PosedFrame:
        image, depth, mask = entry.get("image"), entry.get("depth"), entry.get("mask")
        number = entry.get("frame_number")
        if not isinstance(image, dict) or "path" not in image or "size" not in image:
            raise InputError(f"{where}: frame {number} has no image annotation (path, size)")
        if not isinstance(depth, dict) or not depth.get("path"):
            raise InputError(f"{where}: frame {number} has no depth annotation")
        if not isinstance(entry.get("viewpoint"), dict):
            raise InputError(f"{where}: frame {number} has no viewpoint (camera) annotation")
        try:
            size = (int(image["size"][0]), int(image["size"][1]))
        except (TypeError, ValueError, IndexError):
            raise InputError(f"{where}: frame {number}: image size must be [H, W], got {image['size']!r}") from None
        try:
            K, world_to_camera = co3d_camera(entry["viewpoint"], size)
        except InputError as error:
            raise InputError(f"{where}: frame {number}: {error}") from None
        scale = float(depth.get("scale_adjustment", 1.0))
        if not np.isfinite(scale) or scale <= 0:
            raise InputError(f"{where}: frame {number} has a non-positive depth scale_adjustment {scale}")
        mask_path = self.root / mask["path"] if self.use_masks and isinstance(mask, dict) and mask.get("path") else None
        return PosedFrame(
            name=Path(str(image["path"])).stem,
            image_path=self.root / str(image["path"]),
            depth_path=self.root / str(depth["path"]),
            K=K,
            world_to_camera=world_to_camera,
            depth_encoding="float16",
            depth_scale=scale,
            image_size=size,
            depth_mask_path=self.root / str(depth["mask_path"]) if depth.get("mask_path") else None,
            mask_path=mask_path,
            mask_threshold=self.mask_threshold,
            resize_depth=True,
        )
