"""Pictures of matches. Drawing is kept apart from the models; no global matplotlib state is touched."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .fileio import write_atomically
from .images import ImageInput, load_image


def _as_array(image: ImageInput) -> np.ndarray:
    return load_image(image).permute(1, 2, 0).numpy()


def plot_matches(image_a: ImageInput, image_b: ImageInput, matches: Sequence[dict[str, Any]],
                 path: str | Path | None = None, *, title: str | None = None, dpi: int = 100) -> Figure:
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
    canvas[: b.shape[0], a.shape[1]:] = b
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


def save_png(figure: Figure, path: str | Path, *, dpi: int = 100) -> None:
    """Render ``figure`` as a PNG and write it to ``path`` atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    write_atomically(path, buffer.getvalue())
