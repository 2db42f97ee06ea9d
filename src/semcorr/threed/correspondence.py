"""Exact correspondences between posed RGB-D views: lift, project, check visibility, thin.

For a source view and a target view (:class:`~semcorr.threed.views.PosedView`):

1. **Lift.** Every source pixel with a valid depth (> 0) that lies on the source's foreground mask
   (every valid-depth pixel when there is no mask) is lifted to 3D at its centre
   ``(c + 0.5, r + 0.5)``: ``X = depth * K^-1 [x, y, 1]``.
2. **Project** into the target camera; points behind it (z <= 0) are dropped, and so are points
   whose projection ``(x, y)`` falls outside the image (kept: ``0 <= x < W`` and ``0 <= y < H``).
3. **Occlusion check.** The target's own depth ``d`` is read at the pixel the projection falls in
   (nearest pixel, ``floor(x), floor(y)``). A point is kept only where ``d > 0`` (visibility cannot
   be checked where the target has no depth) and ``|z - d| <= depth_tolerance * z``, ``z`` being
   the point's depth in the target camera: a surface in front of it (an occluder) or a hole behind
   it both fail.
4. **Target mask.** Where the target has a foreground mask, the projection must fall on it.
5. **Thinning (non-maximum suppression, radius r = ``nms_radius``).** Candidates are ranked by
   their relative depth error ``|z - d| / z`` (most consistent first; ties in the source pixels'
   raster order). In each square source cell of side ``r / sqrt(2)`` (any two points in it are
   closer than r) only the best candidate competes; these are visited in rank order and one is
   kept when no kept point lies closer than r pixels to it in the source image and, with
   ``nms_in_target`` (the default), in the target image too. So kept points are at least r apart
   in both images. ``nms_radius = 0`` keeps every candidate.

The points are returned in the source's raster order (row by row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .views import PosedView, invert_rigid

MIN_Z = 1e-9  # points at or behind the camera plane cannot be projected


@dataclass(frozen=True)
class PairSettings:
    """How correspondences are generated (stored with every pair file).

    Attributes:
        frames: frames taken per sequence, evenly spaced (:func:`select_frames`); the first is the
            source, the others the targets.
        depth_tolerance: occlusion check, relative: keep where ``|z - d| <= depth_tolerance * z``.
        nms_radius: minimum distance in pixels between kept points; 0 disables thinning.
        nms_in_target: also keep points ``nms_radius`` apart in the target image.
    """

    frames: int = 4
    depth_tolerance: float = 0.05
    nms_radius: float = 10.0
    nms_in_target: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or self.frames < 2:
            raise InputError(f"frames must be an integer >= 2 (one source, at least one target), got {self.frames}")
        if not (math.isfinite(self.depth_tolerance) and self.depth_tolerance > 0):
            raise InputError(f"depth_tolerance must be positive, got {self.depth_tolerance}")
        if not (math.isfinite(self.nms_radius) and self.nms_radius >= 0):
            raise InputError(f"nms_radius must be >= 0 pixels, got {self.nms_radius}")


@dataclass(frozen=True, eq=False)
class Correspondences:
    """Points of a source view and where they lie in one target view.

    Attributes:
        source, target: the frames' names.
        source_xy: (N, 2) float32 source pixel centres ``(x, y)``.
        target_xy: (N, 2) float32 their projections into the target ``(x, y)``.
        depth_error: (N,) float32 relative depth disagreement ``|z - d| / z`` at the target.
    """

    source: str
    target: str
    source_xy: np.ndarray
    target_xy: np.ndarray
    depth_error: np.ndarray

    def __len__(self) -> int:
        return len(self.source_xy)


def select_frames(count: int, frames: int = 4) -> list[int]:
    """Indices of ``frames`` evenly spaced frames of ``count``: ``floor(i * count / frames)``.

    The spacing of the official DistillDIFT code; over CO3D's orbit around an object it spreads
    the views evenly around the circle (0, 1/4, 1/2, 3/4 of the way for four frames).
    """
    if count < frames:
        raise InputError(f"a sequence needs at least {frames} frames, this one has {count}")
    return [i * count // frames for i in range(frames)]


def make_pairs(views: Sequence[PosedView], settings: PairSettings = PairSettings()) -> list[Correspondences]:
    """Correspondences from ``views[0]`` (the source) to each of ``views[1:]``.

    Returns:
        One :class:`Correspondences` per target, in the order of ``views[1:]``.
    """
    if len(views) < 2:
        raise InputError(f"make_pairs needs a source and at least one target view, got {len(views)} view(s)")
    source = views[0]
    pixels, points = lift(source)
    camera_to_world = invert_rigid(source.world_to_camera)
    return [_correspond(source, pixels, points, camera_to_world, target, settings) for target in views[1:]]


def lift(view: PosedView) -> tuple[np.ndarray, np.ndarray]:
    """The view's usable pixels and their 3D points in its camera.

    Returns:
        (N, 2) float64 pixel centres ``(x, y)`` in raster order, and (3, N) float64 camera points
        (column-major: (3, N) products with 3x3 matrices are much faster than (N, 3) ones).
    """
    usable = view.depth > 0
    if view.mask is not None:
        usable &= view.mask
    rows, cols = np.nonzero(usable)
    pixels = np.stack([cols + 0.5, rows + 0.5], axis=1)
    depth = view.depth[rows, cols].astype(np.float64)
    rays = np.linalg.inv(view.K) @ np.stack([pixels[:, 0], pixels[:, 1], np.ones(len(pixels))])
    return pixels, rays / rays[2] * depth


def project(points: np.ndarray, view: PosedView) -> tuple[np.ndarray, np.ndarray]:
    """(3, N) world points -> (N, 2) float64 pixels ``(x, y)`` in ``view`` and (N,) camera depth z.

    Pixels of points at or behind the camera plane (z <= 0) are meaningless.
    """
    camera = view.world_to_camera[:3, :3] @ points + view.world_to_camera[:3, 3:4]
    z = camera[2]
    image = view.K @ camera
    safe = np.where(z > MIN_Z, z, 1.0)
    return np.stack([image[0] / safe, image[1] / safe], axis=1), z


def _correspond(
    source: PosedView,
    pixels: np.ndarray,
    points: np.ndarray,
    camera_to_world: np.ndarray,
    target: PosedView,
    settings: PairSettings,
) -> Correspondences:
    world = camera_to_world[:3, :3] @ points + camera_to_world[:3, 3:4]
    xy, z = project(world, target)
    height, width = target.image_size
    keep = (z > MIN_Z) & (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    index = np.flatnonzero(keep)
    cols = np.minimum(np.floor(xy[index, 0]).astype(np.int64), width - 1)
    rows = np.minimum(np.floor(xy[index, 1]).astype(np.int64), height - 1)
    seen = target.depth[rows, cols].astype(np.float64)
    error = np.abs(z[index] - seen) / z[index]
    visible = (seen > 0) & (error <= settings.depth_tolerance)
    if target.mask is not None:
        visible &= target.mask[rows, cols]
    index, error = index[visible], error[visible]
    chosen = thin(pixels[index], xy[index], error, settings.nms_radius, settings.nms_in_target)
    index, error = index[chosen], error[chosen]
    return Correspondences(
        source.name,
        target.name,
        pixels[index].astype(np.float32),
        xy[index].astype(np.float32),
        error.astype(np.float32),
    )


def thin(
    source_xy: np.ndarray, target_xy: np.ndarray, score: np.ndarray, radius: float, in_target: bool = True
) -> np.ndarray:
    """Non-maximum suppression of candidate correspondences (the rule of the module docstring).

    Args:
        source_xy: (N, 2) candidate positions in the source; rows in the source's raster order.
        target_xy: (N, 2) the same candidates' positions in the target.
        score: (N,) lower is better (the relative depth error).
        radius: kept points are at least this far apart (pixels); 0 keeps all.
        in_target: enforce the distance in the target image too.
    Returns:
        (M,) sorted indices of the kept candidates.
    """
    count = len(score)
    if radius <= 0 or count == 0:
        return np.arange(count)
    cell = radius / math.sqrt(2.0)
    cells = np.floor(source_xy / cell).astype(np.int64)
    keys = cells[:, 1] * (int(cells[:, 0].max()) + 1) + cells[:, 0]
    best = np.full(int(keys.max()) + 1, np.inf)
    np.minimum.at(best, keys, score)
    candidates = np.flatnonzero(score == best[keys])  # each cell's best (raster order)
    _, first = np.unique(keys[candidates], return_index=True)  # ties: the first in raster order
    contenders = np.sort(candidates[first])
    contenders = contenders[np.argsort(score[contenders], kind="stable")]  # rank order, ties in raster order
    limit = radius * radius
    grids = [_Grid(source_xy[contenders], radius)]
    if in_target:
        grids.append(_Grid(target_xy[contenders], radius))
    kept = []
    for rank in range(len(contenders)):
        if all(grid.free(rank, limit) for grid in grids):
            for grid in grids:
                grid.add(rank)
            kept.append(rank)
    return np.sort(contenders[kept])


class _Grid:
    """Kept points hashed into cells of side ``radius``: a point's neighbours lie in the 3x3 cells around it."""

    def __init__(self, xy: np.ndarray, radius: float) -> None:
        self.xy = xy.tolist()
        self.cells = [tuple(c) for c in np.floor(xy / radius).astype(np.int64).tolist()]
        self.kept: dict[tuple[int, int], list[int]] = {}

    def free(self, index: int, limit: float) -> bool:
        """True when no kept point is closer than sqrt(limit) to point ``index``."""
        x, y = self.xy[index]
        cx, cy = self.cells[index]
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for other in self.kept.get((cx + dx, cy + dy), ()):
                    ox, oy = self.xy[other]
                    if (x - ox) ** 2 + (y - oy) ** 2 < limit:
                        return False
        return True

    def add(self, index: int) -> None:
        self.kept.setdefault(self.cells[index], []).append(index)
