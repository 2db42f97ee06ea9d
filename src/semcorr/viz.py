"""Pictures of matches. Drawing is kept apart from the models; no global matplotlib state is touched."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from .fileio import write_atomically
from .geometry import ImageGeometry
from .images import ImageInput, load_image


def _as_array(image: ImageInput) -> np.ndarray:
    return load_image(image).permute(1, 2, 0).numpy()


def plot_matches(
    image_a: ImageInput,
    image_b: ImageInput,
    matches: Sequence[dict[str, Any]],
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Image A and image B side by side, each match a coloured line from source to target.

    Args:
        matches: ``[{"source": [x, y], "target": [x, y], "score": s}, ...]`` as returned by
            :meth:`semcorr.Matcher.match` (pixels of the original images).
        path: where to save a PNG (optional; written atomically).
    Returns:
        the matplotlib figure.
    """
    a, b = _as_array(image_a), _as_array(image_b)
    height = max(a.shape[0], b.shape[0])
    figure = Figure(figsize=((a.shape[1] + b.shape[1]) / dpi, height / dpi + (0.4 if title else 0)), dpi=dpi)
    FigureCanvasAgg(figure)
    axis = figure.add_axes((0, 0, 1, height / (height + (40 if title else 0))))
    canvas = np.ones((height, a.shape[1] + b.shape[1], 3), dtype=np.float32)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1] :] = b
    axis.imshow(canvas, interpolation="bilinear")
    colour_map = matplotlib.colormaps["hsv"]
    for index, match in enumerate(matches):
        colour = colour_map(index / max(len(matches), 1))
        (xa, ya), (xb, yb) = match["source"], match["target"]
        axis.plot([xa, xb + a.shape[1]], [ya, yb], color=colour, linewidth=1.5, alpha=0.85)
        axis.scatter([xa, xb + a.shape[1]], [ya, yb], color=[colour], s=30, edgecolors="white", linewidths=0.8)
    axis.set_xlim(0, canvas.shape[1])
    axis.set_ylim(height, 0)
    axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=10)
    if path is not None:
        save_png(figure, path, dpi=dpi)
    return figure


def save_png(figure: Figure, path: str | os.PathLike, *, dpi: int = 100) -> None:
    """Render ``figure`` as a PNG and write it to ``path`` atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    write_atomically(path, buffer.getvalue())


def similarity_overlay(
    similarity: Tensor, geometry: ImageGeometry, size: tuple[int, int], *, colour_map: str = "turbo"
) -> np.ndarray:
    """A picture of one similarity map to lay over its image: colour and opacity grow with similarity.

    Each output pixel takes the map's bilinear value at its centre, mapped through ``geometry``
    (so letterbox padding never shows), scaled from the lowest to the highest value on the image
    (``s`` in [0, 1]); the colour is ``colour_map(s)``, the opacity ``0.05 + 0.75 s²`` (the least
    similar places stay almost clear). The geometry maps x and y separately, so the resampling is
    two small matrix products.

    Args:
        similarity: (h, w) similarities over the image's feature grid (e.g. ``Transfer.similarity[b, n]``).
        geometry: the image's :class:`~semcorr.geometry.ImageGeometry`.
        size: (height, width) of the picture; it covers the whole original image.
    Returns:
        (height, width, 4) uint8 RGBA.
    """
    if similarity.ndim != 2:
        raise ValueError(f"similarity must be (h, w), got shape {tuple(similarity.shape)}")
    grid_h, grid_w = similarity.shape
    height, width = size
    original_h, original_w = geometry.original_size
    centres = torch.zeros(max(height, width), 2, dtype=torch.float64)  # pixel centres along x, then along y
    centres[:width, 0] = (torch.arange(width, dtype=torch.float64) + 0.5) * (original_w / width)
    centres[:height, 1] = (torch.arange(height, dtype=torch.float64) + 0.5) * (original_h / height)
    grid = geometry.to_grid(centres, (grid_h, grid_w)).numpy()
    rows, columns = _bilinear_weights(grid[:height, 1], grid_h), _bilinear_weights(grid[:width, 0], grid_w)
    values = rows @ similarity.detach().float().cpu().numpy().astype(np.float64) @ columns.T  # (height, width)
    low, high = values.min(), values.max()
    scaled = (values - low) / max(high - low, 1e-6)
    rgba = matplotlib.colormaps[colour_map](scaled, bytes=True)
    rgba[..., 3] = np.round(255 * (0.05 + 0.75 * scaled**2))
    return rgba


def _bilinear_weights(coordinates: np.ndarray, cells: int) -> np.ndarray:
    """(n, cells) weights of linear interpolation at grid ``coordinates`` (cell centres at integers),
    clamped to the outer cell centres, as ``grid_sample``'s border padding does."""
    position = np.clip(coordinates, 0, cells - 1)
    low = np.minimum(np.floor(position).astype(int), max(cells - 2, 0))
    high = np.minimum(low + 1, cells - 1)
    fraction = position - low
    weights = np.zeros((len(coordinates), cells))
    index = np.arange(len(coordinates))
    np.add.at(weights, (index, low), 1 - fraction)
    np.add.at(weights, (index, high), fraction)
    return weights
