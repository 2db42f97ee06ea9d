"""Matching points between two feature maps: the settings, :func:`transfer_points` and :func:`locate`.

transfer = transfer_points(source_map, target_map, points, MatchSettings(window=11))
transfer.points     # (B, N, 2) target-image pixels
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..features.base import FeatureMap
from ..settings import check_choice, check_int, check_number
from .kernels import MATCH_METHODS, nearest_neighbour, sample_descriptors, similarity_maps, window_soft_argmax


@dataclass(frozen=True)
class MatchSettings:
    """How points are transferred (defaults: the DistillDIFT evaluation protocol).

    Attributes:
        grid: upsample both feature maps to this square grid first (``None``: native grid).
        method: ``window_soft_argmax`` (sub-cell) or ``nearest`` (best cell).
        window: soft-argmax window side in cells of the upsampled grid (odd).
        temperature: soft-argmax temperature on cosine similarities.
    """

    grid: int | None = 60
    method: Literal["window_soft_argmax", "nearest"] = "window_soft_argmax"
    window: int = 11
    temperature: float = 0.02

    def __post_init__(self) -> None:
        check_int(
            self,
            "grid",
            minimum=1,
            maximum=1024,
            optional=True,
            none_means="(0 on the command line) for the native grid",
        )
        check_choice(self, "method", MATCH_METHODS)
        check_int(self, "window", minimum=1, odd=True)
        check_number(self, "temperature", above=0)


@dataclass(frozen=True)
class Transfer:
    """Result of :func:`transfer_points` for a batch of B image pairs with N points each.

    Attributes:
        points: (B, N, 2) predicted target points in target-image pixels (x, y).
        scores: (B, N) cosine similarity at the best target cell.
        similarity: (B, N, h, w) similarity maps on the (upsampled) target grid.
    """

    points: Tensor
    scores: Tensor
    similarity: Tensor


def transfer_points(
    source: FeatureMap, target: FeatureMap, points: Tensor, settings: MatchSettings = MatchSettings()
) -> Transfer:
    """Find source points in the target images.

    Args:
        source: features of B source images.
        target: features of B target images.
        points: (B, N, 2) source points in source-image pixels (x, y).
    """
    if len(source) != len(target) or points.ndim != 3 or points.shape[0] != len(source):
        raise ValueError(
            f"need B source maps, B target maps and (B, N, 2) points; got {len(source)}, "
            f"{len(target)} and {tuple(points.shape)}"
        )
    source, target = source.upsample(settings.grid), target.upsample(settings.grid)
    points = points.to(source.features.device, torch.float32)
    grid_points = torch.stack([g.to_grid(p, source.grid_size) for g, p in zip(source.geometries, points)])
    descriptors = sample_descriptors(source.features, grid_points)
    similarity = similarity_maps(descriptors, target.features)
    found, scores = locate(similarity, settings, target.valid_cells())
    found = torch.stack([g.from_grid(p, target.grid_size) for g, p in zip(target.geometries, found)])
    return Transfer(found, scores, similarity)


def locate(similarity: Tensor, settings: MatchSettings, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Where each similarity map peaks, by ``settings.method``.

    Args:
        similarity: (B, N, h, w) similarity maps.
        valid: optional (B, h, w) bool; cells outside it are never chosen.
    Returns:
        (B, N, 2) grid coordinates (x, y), and (B, N) the similarity at the best cell.
    """
    if settings.method == "nearest":
        return nearest_neighbour(similarity, valid)
    return window_soft_argmax(similarity, settings.window, settings.temperature, valid)
