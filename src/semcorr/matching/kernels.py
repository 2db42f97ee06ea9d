"""Matching kernels: pure functions on tensors (similarity maps, nearest neighbours, soft-argmax).

Grid coordinates follow :mod:`semcorr.geometry`: ``(x, y)`` with cell centres at integers, so cell
``(i, j)`` of an ``(h, w)`` grid sits at ``(j, i)``. Similarities are cosine similarities of
L2-normalised features, in [-1, 1].

    similarity = similarity_maps(sample_descriptors(source, points), target)   # (B, N, h, w)
    found, scores = window_soft_argmax(similarity, window=11)                   # (B, N, 2), (B, N)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry import ImageGeometry

MATCH_METHODS: tuple[str, ...] = ("window_soft_argmax", "nearest")


def _check_shape(name: str, tensor: Tensor, ndim: int, layout: str) -> None:
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(tensor.shape)}")


def grid_to_normalized(points: Tensor, grid_size: tuple[int, int]) -> Tensor:
    """(..., 2) grid coordinates -> (..., 2) ``grid_sample`` coordinates (align_corners=False)."""
    grid_h, grid_w = grid_size
    size = torch.tensor((grid_w, grid_h), dtype=points.dtype, device=points.device)
    return (2.0 * points + 1.0) / size - 1.0


def sample_at_pixels(values: Tensor, geometry: ImageGeometry) -> Tensor:
    """Grid values sampled bilinearly at every pixel centre of the original image.

    Args:
        values: (C, h, w) values on a feature grid of that image.
        geometry: the image's :class:`~semcorr.geometry.ImageGeometry`.
    Returns:
        (C, H, W) float32 at the image's original size.
    """
    _check_shape("values", values, 3, "(C, h, w)")
    height, width = geometry.original_size
    grid_size = (values.shape[-2], values.shape[-1])
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    # the mapping is axis-aligned: transform the x and y axes separately, then combine
    gx = geometry.to_grid(torch.stack((xs, torch.zeros_like(xs)), dim=-1), grid_size)[:, 0]
    gy = geometry.to_grid(torch.stack((torch.zeros_like(ys), ys), dim=-1), grid_size)[:, 1]
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)  # (H, W, 2)
    normalized = grid_to_normalized(grid, grid_size).to(values.device)
    return F.grid_sample(
        values[None].float(), normalized[None], mode="bilinear", padding_mode="border", align_corners=False
    )[0]


def sample_descriptors(features: Tensor, points: Tensor) -> Tensor:
    """Bilinearly sample features at sub-cell grid positions and re-normalise.

    Args:
        features: (B, C, h, w) feature maps.
        points: (B, N, 2) grid coordinates (x, y).
    Returns:
        (B, N, C) L2-normalised descriptors.
    """
    _check_shape("features", features, 4, "(B, C, h, w)")
    _check_shape("points", points, 3, "(B, N, 2)")
    grid_size = (features.shape[-2], features.shape[-1])
    grid = grid_to_normalized(points.to(features.dtype), grid_size)[:, :, None, :]  # (B, N, 1, 2)
    sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.normalize(sampled[..., 0].transpose(1, 2), dim=-1)


def similarity_maps(descriptors: Tensor, features: Tensor) -> Tensor:
    """Cosine similarity of each query descriptor with every cell of a feature map.

    Args:
        descriptors: (B, N, C) L2-normalised query descriptors.
        features: (B, C, h, w) L2-normalised feature maps.
    Returns:
        (B, N, h, w) similarities.
    """
    _check_shape("descriptors", descriptors, 3, "(B, N, C)")
    _check_shape("features", features, 4, "(B, C, h, w)")
    return torch.einsum("bnc,bchw->bnhw", descriptors, features)


def _mask_invalid(similarity: Tensor, valid: Tensor | None) -> Tensor:
    """Set cells outside ``valid`` (B, h, w) to -inf."""
    if valid is None:
        return similarity
    return similarity.masked_fill(~valid[:, None].to(similarity.device), float("-inf"))


def _flat_to_xy(index: Tensor, width: int) -> Tensor:
    return torch.stack((index % width, torch.div(index, width, rounding_mode="floor")), dim=-1)


def nearest_neighbour(similarity: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The best cell of each similarity map.

    Args:
        similarity: (B, N, h, w) similarity maps.
        valid: optional (B, h, w) bool; cells outside it are never chosen.
    Returns:
        (B, N, 2) grid coordinates (x, y) of the best cells, and (B, N) their similarities.
    """
    _check_shape("similarity", similarity, 4, "(B, N, h, w)")
    flat = _mask_invalid(similarity, valid).flatten(2)
    score, index = flat.max(dim=-1)
    return _flat_to_xy(index, similarity.shape[-1]).to(similarity.dtype), score


def _softmax_position(logits: Tensor) -> Tensor:
    """(B, N, h, w) logits -> (B, N, 2) the expected grid position (x, y) under their softmax over all cells."""
    height, width = logits.shape[-2:]
    weights = torch.softmax(logits.flatten(2), dim=-1).view_as(logits)
    xs = torch.arange(width, device=logits.device, dtype=logits.dtype)
    ys = torch.arange(height, device=logits.device, dtype=logits.dtype)
    return torch.stack(((weights.sum(dim=-2) * xs).sum(dim=-1), (weights.sum(dim=-1) * ys).sum(dim=-1)), dim=-1)


def _offsets(similarity: Tensor, peak: Tensor) -> tuple[Tensor, Tensor]:
    """(B, N, 1, w) and (B, N, h, 1): each cell's x and y offset from the map's ``peak`` (B, N, 2)."""
    height, width = similarity.shape[-2:]
    xs = torch.arange(width, device=similarity.device, dtype=similarity.dtype)
    ys = torch.arange(height, device=similarity.device, dtype=similarity.dtype)
    return xs - peak[..., :1, None], ys[:, None] - peak[..., 1:, None]


def window_soft_argmax(
    similarity: Tensor, window: int = 11, temperature: float = 0.02, valid: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Sub-cell position of each map's peak: a softmax-weighted mean over a window around the argmax.

    Args:
        similarity: (B, N, h, w) similarity maps.
        window: side of the square window (odd), in cells.
        temperature: softmax temperature on the similarities (lower is sharper).
        valid: optional (B, h, w) bool; cells outside it get no weight.
    Returns:
        (B, N, 2) grid coordinates (x, y), and (B, N) the similarity at the argmax.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number of cells, got {window}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    peak, score = nearest_neighbour(similarity, valid)
    dx, dy = _offsets(similarity, peak)
    inside = (dx.abs() <= window // 2) & (dy.abs() <= window // 2)  # (B, N, h, w)
    logits = _mask_invalid(similarity, valid).masked_fill(~inside, float("-inf")) / temperature
    return _softmax_position(logits), score


def kernel_soft_argmax(similarity: Tensor, sigma: float = 7.0, temperature: float = 10.0) -> tuple[Tensor, Tensor]:
    """MARCO's soft-argmax: the maps multiplied by a Gaussian around their peak, then a softmax over
    all cells and the expected cell.

    Args:
        similarity: (B, N, h, w) similarity maps (MARCO: raw dot products).
        sigma: the Gaussian's standard deviation in cells (it multiplies the similarities).
        temperature: softmax of ``(s - max) / temperature``.
    Returns:
        (B, N, 2) grid coordinates (x, y), and (B, N) the similarity at the peak.
    """
    _check_shape("similarity", similarity, 4, "(B, N, h, w)")
    peak, score = nearest_neighbour(similarity)
    dx, dy = _offsets(similarity, peak)
    scores = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2)) * similarity
    return _softmax_position((scores - scores.amax(dim=(-2, -1), keepdim=True)) / temperature), score


def zeroed_window_soft_argmax(similarity: Tensor, radius: int = 7, beta: float = 0.02) -> tuple[Tensor, Tensor]:
    """DIY-SC's soft-argmax: cells farther than ``radius`` from the peak (per axis) are multiplied by
    zero (not removed), then a softmax of ``(s - max) / beta`` over all cells; the expected cell is
    clamped to the grid.

    Args:
        similarity: (B, N, h, w) similarity maps (DIY-SC: cosine).
    Returns:
        (B, N, 2) grid coordinates (x, y), and (B, N) the similarity at the peak.
    """
    _check_shape("similarity", similarity, 4, "(B, N, h, w)")
    peak, score = nearest_neighbour(similarity)
    dx, dy = _offsets(similarity, peak)
    scores = similarity * ((dx.abs() <= radius) & (dy.abs() <= radius))
    position = _softmax_position((scores - scores.amax(dim=(-2, -1), keepdim=True)) / beta)
    height, width = similarity.shape[-2:]
    return torch.stack((position[..., 0].clamp(0, width - 1), position[..., 1].clamp(0, height - 1)), dim=-1), score


def mutual_nearest_neighbours(features_a: Tensor, features_b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cell pairs that are each other's nearest neighbour.

    Args:
        features_a: (C, h_a, w_a) L2-normalised features of image A.
        features_b: (C, h_b, w_b) L2-normalised features of image B.
    Returns:
        (M, 2) grid coordinates (x, y) in A, (M, 2) grid coordinates in B, (M,) similarities.
    """
    _check_shape("features_a", features_a, 3, "(C, h, w)")
    _check_shape("features_b", features_b, 3, "(C, h, w)")
    similarity = features_a.flatten(1).T @ features_b.flatten(1)  # (h_a * w_a, h_b * w_b)
    best_b = similarity.argmax(dim=1)
    best_a = similarity.argmax(dim=0)
    index_a = torch.arange(similarity.shape[0], device=similarity.device)
    mutual = best_a[best_b] == index_a
    index_a, index_b = index_a[mutual], best_b[mutual]
    scores = similarity[index_a, index_b]
    return (
        _flat_to_xy(index_a, features_a.shape[-1]).to(features_a.dtype),
        _flat_to_xy(index_b, features_b.shape[-1]).to(features_b.dtype),
        scores,
    )
