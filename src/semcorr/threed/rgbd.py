"""Posed RGB-D folders: images, 16-bit depth PNGs and a ``cameras.json`` per sequence.

    <sequence>/
      cameras.json
      rgb/00000.jpg ...          any image format Pillow reads
      depth/00000.png ...        uint16 PNG; metres = value / depth_scale
      mask/00000.png ...         optional foreground masks (foreground where >= half the maximum, e.g. 128)

``cameras.json``::

    {"K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],     # shared intrinsics (or "K" per frame)
     "depth_scale": 1000.0,                          # stored units per metre (default 1000: millimetres)
     "pixel_centers": "integer",                     # where K puts the top-left pixel's centre:
                                                     #   "integer" (default; OpenCV, TUM, ScanNet: (0, 0))
                                                     #   or "half" (COLMAP, semcorr: (0.5, 0.5))
     "width": 640, "height": 480,                    # optional; checked against the images
     "frames": [{"rgb": "rgb/00000.jpg", "depth": "depth/00000.png",
                 "camera_to_world": [[...4x4...]],   # world = T @ camera, OpenCV camera axes
                 "mask": "mask/00000.png"}, ...]}    # optional per frame

Paths are relative to the sequence folder. The dataset root is either one such folder or a folder
holding several (found at any depth; a sequence is named by its path below the root).

Every frame ``cameras.json`` lists must have its image and depth file: otherwise the sequence is
refused with an :class:`~semcorr.errors.InputError` naming the first missing file and the count.
Images in the frames' folders that ``cameras.json`` does not list have no camera and are ignored
(the sequence carries a note saying how many).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._moved import renamed_names
from ..errors import InputError
from ..fileio import read_json
from ..images import IMAGE_SUFFIXES as _IMAGE_SUFFIXES  # not as IMAGE_SUFFIXES: the old name of FRAME_SUFFIXES
from .views import PosedFrame, PosedSequence, check_intrinsics, check_rigid, invert_rigid, k_from_integer_centres

CAMERAS_FILE = "cameras.json"
FRAME_SUFFIXES = _IMAGE_SUFFIXES - {".gif"}  # colour frames of a sequence: any image but an animation
PIXEL_CENTERS = ("integer", "half")


class RGBDFolders:
    """Reader of posed RGB-D folders (see the module docstring for the layout).

    Args:
        root: one sequence folder (holding ``cameras.json``) or a folder of them.
    """

    kind = "rgbd"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: not a folder")
        if (self.root / CAMERAS_FILE).is_file():
            self._folders = {self.root.resolve().name or "sequence": self.root}
        else:
            found = sorted(path.parent for path in self.root.rglob(CAMERAS_FILE))
            self._folders = {folder.relative_to(self.root).as_posix(): folder for folder in found}
        if not self._folders:
            raise InputError(f"{self.root}: no {CAMERAS_FILE} in it or below it (not a posed RGB-D folder)")

    def sequence_names(self) -> list[str]:
        return sorted(self._folders)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def sequence(self, name: str) -> PosedSequence:
        folder = self._folders.get(name)
        if folder is None:
            raise InputError(f"{self.root}: no sequence named {name!r}")
        return read_rgbd_sequence(folder, name=name)


def read_rgbd_sequence(folder: str | Path, *, name: str | None = None) -> PosedSequence:
    """The frames of one posed RGB-D folder, in the order ``cameras.json`` lists them."""
    folder = Path(folder)
    path = folder / CAMERAS_FILE
    data = read_json(path, expect=dict)
    frames_data = data.get("frames")
    if not isinstance(frames_data, list):
        raise InputError(f'{path}: expected a "frames" list')
    depth_scale = _positive(data.get("depth_scale", 1000.0), f"{path}: depth_scale")
    centres = data.get("pixel_centers", "integer")
    if centres not in PIXEL_CENTERS:
        raise InputError(f"{path}: pixel_centers must be one of {PIXEL_CENTERS}, got {centres!r}")
    size = _stated_size(data, path)
    shared_k = data.get("K")
    frames: list[PosedFrame] = []
    missing: list[str] = []
    for index, entry in enumerate(frames_data):
        where = f"{path}: frame {index}"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected an object with rgb, depth and camera_to_world")
        for key in ("rgb", "depth", "camera_to_world"):
            if key not in entry:
                raise InputError(f"{where} has no {key!r} entry")
        K = entry.get("K", shared_k)
        if K is None:
            raise InputError(f'{where}: no K (give a shared "K" or one per frame)')
        K = check_intrinsics(_matrix(K, where), f"{where}")
        if centres == "integer":
            K = k_from_integer_centres(K)
        camera_to_world = check_rigid(_matrix(entry["camera_to_world"], where), f"{where}: camera_to_world")
        image_path, depth_path = folder / str(entry["rgb"]), folder / str(entry["depth"])
        mask_path = folder / str(entry["mask"]) if entry.get("mask") else None
        missing += [_shown(p, folder) for p in (image_path, depth_path, mask_path) if p is not None and not p.is_file()]
        frames.append(
            PosedFrame(
                name=image_path.stem,
                image_path=image_path,
                depth_path=depth_path,
                K=K,
                world_to_camera=invert_rigid(camera_to_world),
                depth_encoding="uint16",
                depth_scale=1.0 / depth_scale,
                image_size=size,
                mask_path=mask_path,
            )
        )
    if missing:
        raise InputError(
            f"{path}: lists {len(frames)} frames but {len(missing)} of their files are missing (first: {missing[0]})"
        )
    names = [frame.name for frame in frames]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: two frames share an image name; frame names must be unique")
    return PosedSequence(name or folder.name, tuple(frames), _unlisted_note(folder, frames))


def _shown(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` where it lies below it (cameras.json may also name files elsewhere)."""
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def _unlisted_note(folder: Path, frames: list[PosedFrame]) -> tuple[str, ...]:
    """A note when the image folders hold images that cameras.json does not list."""
    listed = {frame.image_path.resolve() for frame in frames}
    folders = {frame.image_path.parent for frame in frames}
    unlisted = sorted(
        p for d in folders for p in d.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.resolve() not in listed
    )
    if not unlisted:
        return ()
    where = ", ".join(sorted(_shown(d, folder) + "/" for d in folders))
    return (
        f"{folder / CAMERAS_FILE}: {where} holds {len(unlisted)} images that it does not list "
        f"(first: {unlisted[0].name}); they have no camera and are ignored",
    )


def _matrix(value: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: not a matrix of numbers") from None


def _positive(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where} must be a number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise InputError(f"{where} must be positive, got {value!r}")
    return number


def _stated_size(data: dict[str, Any], path: Path) -> tuple[int, int] | None:
    if "width" not in data and "height" not in data:
        return None
    try:
        return int(data["height"]), int(data["width"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: give both width and height as integers, or neither") from None


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
