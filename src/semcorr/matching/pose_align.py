"""Pose alignment: match from the horizontally flipped source when it agrees better with the target.

This is the test-time *adaptive pose alignment* of GeoAware-SC (Zhang et al., CVPR 2024, Sec. 4.1),
in the mask-free variant (``--ADAPT_FLIP --MUTUAL_NN``) that DistillDIFT uses for its weakly
supervised SPair-71k figure. For each pair, the features of the source image and of its mirror
image are both compared with the target's:

1. On the matching grid, every valid source cell and every valid target cell are paired with
   their nearest neighbour in the other image; pairs that choose each other are *mutual* nearest
   neighbours.
2. An orientation's score is the mean Euclidean distance between the L2-normalised features of its
   mutual pairs, ``sqrt(2 - 2 cos)``: low means the two images agree.
3. The flipped source is used when its score is strictly lower; ties keep the original.

Source points are then looked up in the flipped source at their mirrored position ``(W - x, y)``
(continuous pixel coordinates, :mod:`semcorr.geometry`); the predictions are target points, so
nothing needs mapping back.

The decision is made on the features' native grid (31x31 for the student at 434), as in
DistillDIFT; matching then upsamples as usual. In evaluation, a keypoint with a left/right partner
(:mod:`semcorr.data.symmetry`: SPair-71k, AP-10K, CUB) is looked up at its partner's mirrored
position, as DistillDIFT and GeoAware-SC do: in the mirror image the part that looks like a left
eye is the original's right eye. Points given to :meth:`semcorr.Matcher.match` have no labels and
keep their own positions. One difference from the reference code: cells on letterbox padding are
left out of the comparison (the reference uses every cell of its square canvas).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..features.base import FeatureMap
from .kernels import mutual_nearest_neighbours


def flip_image(pixels: Tensor) -> Tensor:
    """Mirror an image left to right.

    Args:
        pixels: (..., H, W) image(s), e.g. (3, H, W).
    Returns:
        (..., H, W) mirrored copy: column ``j`` becomes column ``W - 1 - j``.
    """
    if pixels.ndim < 2:
        raise ValueError(f"pixels must be (..., H, W), got shape {tuple(pixels.shape)}")
    return torch.flip(pixels, dims=(-1,))


def flip_points(points: Tensor, width: float | Tensor) -> Tensor:
    """Where points of an image lie in its mirror image: ``(x, y) -> (W - x, y)``.

    Exact in semcorr's continuous pixel coordinates (the image covers ``[0, W] x [0, H]``), and
    its own inverse.

    Args:
        points: (..., 2) points (x, y) in pixels.
        width: the image's width ``W`` in pixels; a tensor broadcasts against ``points[..., 0]``.
    Returns:
        (..., 2) mirrored points.
    """
    if points.ndim < 1 or points.shape[-1] != 2:
        raise ValueError(f"points must be (..., 2), got shape {tuple(points.shape)}")
    return torch.stack((width - points[..., 0], points[..., 1]), dim=-1)


def mutual_nn_distance(
    source: Tensor, target: Tensor, source_valid: Tensor | None = None, target_valid: Tensor | None = None
) -> Tensor:
    """How well two feature maps agree: the mean feature distance of their mutual nearest neighbours.

    Args:
        source: (C, h, w) features of one image.
        target: (C, h', w') features of the other.
        source_valid: optional (h, w) bool; cells outside it (letterbox padding) take no part.
        target_valid: optional (h', w') bool, the same for the target.
    Returns:
        () mean Euclidean distance ``sqrt(2 - 2 cos)`` between the L2-normalised features of the
        mutual nearest-neighbour cell pairs, in [0, 2]. Lower is better.
    """
    for name, features, valid in (("source", source, source_valid), ("target", target, target_valid)):
        if features.ndim != 3:
            raise ValueError(f"{name} features must be (C, h, w), got shape {tuple(features.shape)}")
        if valid is not None and tuple(valid.shape) != tuple(features.shape[1:]):
            raise ValueError(f"{name}_valid must be {tuple(features.shape[1:])}, got {tuple(valid.shape)}")
    if source.shape[0] != target.shape[0]:
        raise ValueError(f"source has {source.shape[0]} channels and target {target.shape[0]}")
    cells = []
    for features, valid in ((source, source_valid), (target, target_valid)):
        flat = F.normalize(features.float().flatten(1), dim=0)  # (C, h * w)
        if valid is not None:
            flat = flat[:, valid.flatten().to(flat.device)]
        if flat.shape[1] == 0:
            raise ValueError("a feature map has no valid cells")
        cells.append(flat[:, None, :])  # (C, 1, M): the valid cells as a one-row map
    _, _, similarity = mutual_nearest_neighbours(*cells)  # at least one pair: the global best is mutual
    return (2.0 - 2.0 * similarity).clamp(min=0.0).sqrt().mean()


@dataclass(frozen=True)
class Orientation:
    """Which source orientation each of B pairs uses.

    Attributes:
        flipped: (B,) bool, True where the mirrored source agrees better with the target.
        distance: (B,) mutual nearest-neighbour distance of the original source and the target.
        distance_flipped: (B,) the same for the mirrored source.
    """

    flipped: Tensor
    distance: Tensor
    distance_flipped: Tensor


def choose_orientation(source: FeatureMap, flipped: FeatureMap, target: FeatureMap) -> Orientation:
    """Pick, per pair, the source orientation whose mutual nearest neighbours agree best.

    Args:
        source: features of B source images, on the grid used for matching.
        flipped: features of the same B images mirrored (:func:`flip_image`), on the same grid.
        target: features of B target images.
    Returns:
        an :class:`Orientation`; a pair is flipped only if ``distance_flipped < distance``.
    """
    if not len(source) == len(flipped) == len(target):
        raise ValueError(f"need B source, flipped and target maps; got {len(source)}, {len(flipped)} and {len(target)}")
    if flipped.grid_size != source.grid_size:
        raise ValueError(f"flipped source grid {flipped.grid_size} differs from the source's {source.grid_size}")
    distances = []
    target_valid = target.valid_cells()
    for fmap in (source, flipped):
        valid = fmap.valid_cells()
        distances.append(
            torch.stack(
                [
                    mutual_nn_distance(fmap.features[i], target.features[i], valid[i], target_valid[i])
                    for i in range(len(target))
                ]
            )
        )
    return Orientation(distances[1] < distances[0], distances[0], distances[1])


def align_sources(
    source: FeatureMap, flipped: FeatureMap, target: FeatureMap, points: Tensor, partners: Tensor | None = None
) -> tuple[FeatureMap, Tensor, Orientation]:
    """Replace each source by its mirror image where that agrees better with the target.

    Args:
        source: features of B source images, on their native grid (DistillDIFT decides on it).
        flipped: features of the same B images mirrored, on the same grid.
        target: features of B target images.
        points: (B, N, 2) source points in source-image pixels (x, y).
        partners: optional (B, N) int64: where pair b is flipped, point n is looked up at the
            mirrored position of point ``partners[b, n]`` (its left/right partner,
            :func:`semcorr.data.symmetry.mirror_partner_rows`); ``None``: each point its own.
    Returns:
        the source features to match from (original or mirrored per pair), (B, N, 2) the points to
        look up in them (mirrored, ``(W - x, y)``, where flipped), and the :class:`Orientation`.
        Target points found from these are answers for the original ``points``.
    """
    if points.ndim != 3 or points.shape[0] != len(source) or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, N, 2) with B = {len(source)}, got shape {tuple(points.shape)}")
    if partners is not None and tuple(partners.shape) != tuple(points.shape[:2]):
        raise ValueError(f"partners must be {tuple(points.shape[:2])}, got shape {tuple(partners.shape)}")
    orientation = choose_orientation(source, flipped, target)
    chosen = orientation.flipped.to(source.features.device)
    features = torch.where(chosen[:, None, None, None], flipped.features, source.features)
    geometries = tuple(
        f if flip else s for s, f, flip in zip(source.geometries, flipped.geometries, orientation.flipped.tolist())
    )
    widths = torch.tensor(
        [float(g.original_size[1]) for g in source.geometries], dtype=points.dtype, device=points.device
    )
    swapped = (
        points if partners is None else torch.gather(points, 1, partners.to(points.device)[..., None].expand(-1, -1, 2))
    )
    mirrored = flip_points(swapped, widths[:, None])
    query = torch.where(orientation.flipped.to(points.device)[:, None, None], mirrored, points)
    return FeatureMap(features, geometries, source.model, source.random_weights), query, orientation
