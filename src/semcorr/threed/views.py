"""Posed RGB-D views: the record every multi-view reader yields, and how its files are decoded.

A reader (:mod:`.rgbd` for posed RGB-D folders, :mod:`.co3d` for CO3D v2) lists sequences of
:class:`PosedFrame` records: light references to a frame's files plus its camera. ``frame.load()``
decodes the depth map and masks into a :class:`PosedView`, which is all that correspondence
generation needs (:mod:`.correspondence`).

Conventions, shared by every reader:

* Pixels: continuous coordinates, the image covers ``[0, W] x [0, H]`` and the centre of pixel
  (row r, col c) is ``(c + 0.5, r + 0.5)`` (see :mod:`semcorr.geometry`). ``K`` is expressed in
  this convention: a point ``X_cam`` projects to ``(x, y) = (K @ X_cam)[:2] / z``. An OpenCV-style
  K (pixel centres at integers, as in TUM, ScanNet, ICL-NUIM) becomes ours by adding 0.5 to the
  principal point (:func:`k_from_integer_centres`).
* Cameras: OpenCV axes (x right, y down, z forward). ``world_to_camera`` is a 4x4 rigid transform:
  ``X_cam = world_to_camera @ [X_world, 1]``.
* Depth: the z coordinate of the surface point in camera space (not the distance along the ray),
  float32, in the unit of the camera translations (metres for RGB-D folders; CO3D's reconstruction
  unit for CO3D); 0 marks pixels without a valid depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

DepthEncoding = Literal["uint16", "float16"]
RIGID_TOLERANCE = 1e-3  # how far R^T R may be from the identity before a pose is refused


@dataclass(frozen=True, eq=False)
class PosedView:
    """One decoded view: what lifting and projecting points needs.

    Attributes:
        name: the frame's name within its sequence (e.g. ``00050`` or ``frame000042``).
        image_path: the RGB image file (not decoded here).
        image_size: (H, W) of the image in pixels.
        depth: (H, W) float32 depth (camera z), 0 where invalid.
        mask: (H, W) bool foreground mask, or None when the dataset has none.
        K: (3, 3) float64 intrinsics in semcorr's pixel convention (pixel centres at +0.5).
        world_to_camera: (4, 4) float64 rigid transform to OpenCV camera axes.
    """

    name: str
    image_path: Path
    image_size: tuple[int, int]
    depth: np.ndarray
    mask: np.ndarray | None
    K: np.ndarray
    world_to_camera: np.ndarray

    def __post_init__(self) -> None:
        height, width = self.image_size
        if self.depth.shape != (height, width):
            raise InputError(
                f"{self.name}: depth map is {self.depth.shape[1]}x{self.depth.shape[0]}, image is {width}x{height}"
            )
        if self.mask is not None and self.mask.shape != (height, width):
            raise InputError(
                f"{self.name}: mask is {self.mask.shape[1]}x{self.mask.shape[0]}, image is {width}x{height}"
            )
        if self.K.shape != (3, 3) or self.world_to_camera.shape != (4, 4):
            raise InputError(f"{self.name}: K must be 3x3 and world_to_camera 4x4")


@dataclass(frozen=True, eq=False)
class PosedFrame:
    """A frame's files and camera, not yet decoded. :meth:`load` gives the :class:`PosedView`.

    Attributes:
        name: the frame's name within its sequence.
        image_path, depth_path: the RGB image and the depth map files.
        K: (3, 3) intrinsics in semcorr's pixel convention, for an image of ``image_size``.
        world_to_camera: (4, 4) rigid world-to-camera transform (OpenCV axes).
        depth_encoding: ``uint16`` (integer PNG) or ``float16`` (CO3D: the 16 bits of a PNG
            reinterpreted as IEEE half floats).
        depth_scale: depth = stored value * depth_scale.
        image_size: (H, W) the annotations state, checked against the file; None: read it.
        depth_mask_path: optional PNG, non-zero where the depth is valid.
        mask_path: optional foreground PNG; foreground where value / max >= mask_threshold, max
            being 255 for 8-bit and 65535 for 16-bit masks.
        mask_threshold: see ``mask_path``.
        resize_depth: resample a depth map (and depth mask) of another size to the image's with
            nearest neighbour (CO3D); otherwise a size mismatch is an error.
    """

    name: str
    image_path: Path
    depth_path: Path
    K: np.ndarray
    world_to_camera: np.ndarray
    depth_encoding: DepthEncoding = "uint16"
    depth_scale: float = 1.0
    image_size: tuple[int, int] | None = None
    depth_mask_path: Path | None = None
    mask_path: Path | None = None
    mask_threshold: float = 0.5
    resize_depth: bool = False

    def load(self) -> PosedView:
        """Decode the depth map and masks (the RGB image is only measured, not decoded)."""
        size = read_image_size(self.image_path)
        if self.image_size is not None and tuple(self.image_size) != size:
            raise InputError(
                f"{self.image_path}: image is {size[1]}x{size[0]} but its annotation says "
                f"{self.image_size[1]}x{self.image_size[0]}"
            )
        depth = read_depth(self.depth_path, self.depth_encoding, self.depth_scale)
        if self.depth_mask_path is not None:
            valid = read_grey(self.depth_mask_path) > 0
            if valid.shape != depth.shape:
                valid = _fit(valid, depth.shape, self.depth_mask_path, self.resize_depth)
            depth = np.where(valid, depth, np.float32(0.0))
        depth = _fit(depth, size, self.depth_path, self.resize_depth)
        mask = None
        if self.mask_path is not None:
            grey = read_grey(self.mask_path)
            if grey.shape != size:
                raise InputError(
                    f"{self.mask_path}: mask is {grey.shape[1]}x{grey.shape[0]}, image is {size[1]}x{size[0]}"
                )
            top = float(np.iinfo(grey.dtype).max) if grey.dtype.kind in "ui" else 1.0
            mask = grey.astype(np.float32) >= self.mask_threshold * top
        return PosedView(
            self.name,
            self.image_path,
            size,
            depth,
            mask,
            np.asarray(self.K, dtype=np.float64),
            np.asarray(self.world_to_camera, dtype=np.float64),
        )


@dataclass(frozen=True, eq=False)
class PosedSequence:
    """The frames of one sequence in temporal order, plus notes a reader wants shown (one line each)."""

    name: str
    frames: tuple[PosedFrame, ...]
    notes: tuple[str, ...] = ()


# --- cameras ---------------------------------------------------------------------------------


def k_from_integer_centres(K: np.ndarray) -> np.ndarray:
    """(3, 3) OpenCV-style K (top-left pixel centred at (0, 0)) -> semcorr's (centred at (0.5, 0.5))."""
    ours = np.array(K, dtype=np.float64)
    ours[0, 2] += 0.5 * ours[2, 2]
    ours[1, 2] += 0.5 * ours[2, 2]
    return ours


def check_intrinsics(K: np.ndarray, where: str) -> np.ndarray:
    """(3, 3) float64 K, refused unless finite with positive focal lengths and last row (0, 0, 1)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise InputError(f"{where}: K must be a finite 3x3 matrix")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise InputError(f"{where}: K must have positive focal lengths and last row 0, 0, 1")
    return K


def check_rigid(matrix: np.ndarray, where: str) -> np.ndarray:
    """(4, 4) float64 rigid transform, refused unless its rotation is orthonormal with det +1."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise InputError(f"{where}: expected a finite 4x4 matrix")
    rotation = matrix[:3, :3]
    if (
        not np.allclose(matrix[3], (0.0, 0.0, 0.0, 1.0), atol=RIGID_TOLERANCE)
        or not np.allclose(rotation.T @ rotation, np.eye(3), atol=RIGID_TOLERANCE)
        or np.linalg.det(rotation) < 0
    ):
        raise InputError(f"{where}: not a rigid transform (rotation not orthonormal or last row not 0 0 0 1)")
    return matrix


def invert_rigid(matrix: np.ndarray) -> np.ndarray:
    """(4, 4) inverse of a rigid transform."""
    rotation, translation = matrix[:3, :3], matrix[:3, 3]
    inverse = np.eye(4)
    inverse[:3, :3] = rotation.T
    inverse[:3, 3] = -rotation.T @ translation
    return inverse


# --- files -----------------------------------------------------------------------------------


def read_image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise InputError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"{path}: not a readable image ({error})") from None
    return height, width


def _open_array(path: Path, what: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.array(image)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable {what} ({' '.join(str(error).split())})") from None
    if array.ndim != 2:
        raise InputError(f"{path}: {what} must be a single-channel image, got mode {mode}")
    return array


def read_grey(path: Path) -> np.ndarray:
    """(H, W) values of a single-channel mask PNG (8 or 16 bit)."""
    array = _open_array(path, "mask")
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    return array


def read_depth(path: Path, encoding: DepthEncoding, scale: float) -> np.ndarray:
    """(H, W) float32 depth = stored value * scale; non-finite and non-positive values become 0.

    ``uint16``: a 16-bit (or 8-bit) integer PNG. ``float16``: CO3D's encoding, the PNG's 16-bit
    values reinterpreted as half floats.
    """
    array = _open_array(path, "depth map")
    if array.dtype.kind not in "ui" or (array.size and (array.min() < 0 or array.max() > 65535)):
        raise InputError(f"{path}: depth map must be a 16-bit integer PNG, got values of type {array.dtype}")
    stored = array.astype(np.uint16)
    values = stored.view(np.float16) if encoding == "float16" else stored
    depth = values.astype(np.float32) * np.float32(scale)
    depth[~np.isfinite(depth) | (depth <= 0)] = 0.0
    return depth


def _fit(array: np.ndarray, size: tuple[int, int], path: Path, resize: bool) -> np.ndarray:
    """``array`` resampled to ``size`` (H, W) with nearest neighbour, if ``resize`` allows it."""
    if array.shape == size:
        return array
    if not resize:
        raise InputError(f"{path}: is {array.shape[1]}x{array.shape[0]}, image is {size[1]}x{size[0]}")
    height, width = size
    # Nearest neighbour in continuous coordinates: output pixel centre (c + 0.5) maps to
    # (c + 0.5) * w / W in the source, which lies in source pixel floor of that.
    rows = np.minimum(((np.arange(height) + 0.5) * array.shape[0] / height).astype(np.int64), array.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * array.shape[1] / width).astype(np.int64), array.shape[1] - 1)
    return array[rows[:, None], cols[None, :]]


class ViewDataset(Protocol):
    """What :func:`semcorr.threed.make_3d_pairs` needs of a multi-view dataset reader."""

    kind: str
    root: Path

    def sequence_names(self) -> list[str]:
        """Every sequence's name, sorted; names may contain ``/`` (e.g. ``category/sequence``)."""
        ...

    def sequence(self, name: str) -> PosedSequence:
        """The sequence's frames in temporal order; InputError when its files do not agree."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able reader options that change the result (stored in the pair file)."""
        ...
