"""Zero-shot foreground/background segmentation by k-means (k = 2) on dense features.

    masks = segment_images(["cat.jpg"], model="dinov2-b-reg")   # [(H, W) bool tensor]

Per image: the features of the cells that lie on the image (not on letterbox padding) are
clustered into two groups by k-means in torch (seeded k-means++ initialisation, several restarts,
the run with the lowest inertia kept). **Foreground rule:** the cluster that covers the smaller
fraction of the grid's border cells is the foreground (objects are rarely cut by every image
edge, the background nearly always is); on a tie, the smaller cluster.

Masks reach image resolution through the FeatureMap geometry: for each cell the margin
``|f - c_bg|^2 - |f - c_fg|^2`` (positive on the foreground side) is sampled bilinearly at every
original pixel's centre, and the mask is where it is positive, so boundaries fall between cells
rather than on the cell grid. Two optional steps (on by default, see :class:`SegmentSettings`):
background cells enclosed by foreground become foreground, and the boundary is refined at pixel
level by the image's colours within a band of 1.5 cells (:mod:`semcorr.segment.refine`; features
see a neighbourhood, so coarse masks overshoot an object's outline by up to about a cell).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import InputError
from ..features.base import Extractor, FeatureMap
from ..features.config import DEFAULT_MODEL
from ..features.registry import build_extractor
from ..fileio import check_output_folder, make_folder, write_atomically
from ..geometry import ImageGeometry
from ..images import ImageInput, image_name, load_image
from ..matching.kernels import sample_at_pixels
from ..settings import check_bool, check_int, check_number
from .refine import refine_mask


@dataclass(frozen=True)
class SegmentSettings:
    """k-means segmentation settings.

    Attributes:
        grid: upsample features to this square grid before clustering (``None``: native grid).
        restarts: k-means runs from different seeded initialisations; the lowest inertia wins.
        iterations: Lloyd iterations per run at most (stops early when assignments settle).
        seed: seed of the initialisations (results are deterministic for a given seed).
        batch_size: images per feature-extraction batch.
        fill_holes: background cells enclosed by foreground (not connected to the image border
            through background) become foreground: objects are taken to be solid.
        refine_band: refine the boundary at pixel level with the image's colours within this many
            feature cells of it (:mod:`semcorr.segment.refine`); 0 turns refinement off.
    """

    grid: int | None = None
    restarts: int = 4
    iterations: int = 30
    seed: int = 0
    batch_size: int = 8
    fill_holes: bool = True
    refine_band: float = 1.5

    def __post_init__(self) -> None:
        check_int(
            self,
            "grid",
            minimum=1,
            maximum=1024,
            optional=True,
            none_means="(0 on the command line) for the native grid",
        )
        check_int(self, "restarts", minimum=1)
        check_int(self, "iterations", minimum=1)
        check_int(self, "seed")
        check_int(self, "batch_size", minimum=1)
        check_bool(self, "fill_holes")
        check_number(self, "refine_band", minimum=0)


def kmeans(
    points: Tensor, k: int = 2, *, restarts: int = 4, iterations: int = 30, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means with k-means++ initialisation, best of ``restarts`` runs.

    Args:
        points: (M, C) samples.
    Returns:
        (M,) int64 labels in [0, k) and (k, C) centroids.
    """
    if points.ndim != 2 or points.shape[0] < k:
        raise ValueError(f"need (M, C) points with M >= k = {k}, got shape {tuple(points.shape)}")
    points = points.float()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    best: tuple[float, Tensor, Tensor] | None = None
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    for _ in range(restarts):
        centroids = _kmeans_pp(points, k, generator)
        labels = None
        for _ in range(iterations):
            new_labels = squared_distances(points, centroids).argmin(dim=1)
            if labels is not None and torch.equal(new_labels, labels):
                break
            labels = new_labels
            one_hot = F.one_hot(labels, k).to(points.dtype)  # (M, k)
            counts = one_hot.sum(dim=0)
            sums = one_hot.T @ points  # (k, C)
            filled = counts > 0  # an emptied cluster keeps its centroid
            centroids[filled] = sums[filled] / counts[filled, None]
        distances = squared_distances(points, centroids)
        inertia, labels = distances.min(dim=1)
        if best is None or float(inertia.sum()) < best[0]:
            best = (float(inertia.sum()), labels, centroids.clone())
    assert best is not None  # restarts >= 1
    return best[1], best[2]


def squared_distances(points: Tensor, centroids: Tensor) -> Tensor:
    """(M, C) and (k, C) -> (M, k) squared Euclidean distances (a matrix product; faster than cdist)."""
    distances = points.pow(2).sum(1, keepdim=True) - 2 * points @ centroids.T + centroids.pow(2).sum(1)
    return distances.clamp_(min=0)


def _kmeans_pp(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: (k, C) initial centroids drawn from ``points``."""
    first = int(torch.randint(len(points), (1,), generator=generator))
    centroids = [points[first]]
    for _ in range(1, k):
        distance = squared_distances(points, torch.stack(centroids)).min(dim=1).values.cpu()
        if float(distance.sum()) <= 0:  # all points identical: any choice will do
            index = int(torch.randint(len(points), (1,), generator=generator))
        else:
            index = int(torch.multinomial(distance / distance.sum(), 1, generator=generator))
        centroids.append(points[index])
    return torch.stack(centroids).clone()


def border_cells(valid: Tensor) -> Tensor:
    """(h, w) bool: valid cells with one of their 8 neighbours invalid or off the grid."""
    padded = F.pad(valid[None, None].float(), (1, 1, 1, 1), value=0.0)
    neighbours_min = -F.max_pool2d(-padded, kernel_size=3, stride=1)[0, 0]  # 0 where any neighbour is out
    return valid & (neighbours_min < 0.5)


def foreground_margin(features: Tensor, valid: Tensor, settings: SegmentSettings = SegmentSettings()) -> Tensor:
    """Cluster one image's cells and return how far each cell is on the foreground side.

    Args:
        features: (C, h, w) L2-normalised features.
        valid: (h, w) bool, cells on the image.
    Returns:
        (h, w) margin ``|f - c_bg|^2 - |f - c_fg|^2``: positive on foreground cells.
    """
    channels, height, width = features.shape
    flat = features.reshape(channels, -1).T  # (h*w, C)
    inside = valid.reshape(-1)
    labels, centroids = kmeans(
        flat[inside], 2, restarts=settings.restarts, iterations=settings.iterations, seed=settings.seed
    )
    border = border_cells(valid).reshape(-1)[inside]
    border_share = [float((labels[border] == j).float().mean()) if border.any() else 0.0 for j in range(2)]
    sizes = [int((labels == j).sum()) for j in range(2)]
    foreground = min(range(2), key=lambda j: (border_share[j], sizes[j]))
    distance = squared_distances(flat.float(), centroids)  # (h*w, 2)
    margin = (distance[:, 1 - foreground] - distance[:, foreground]).reshape(height, width)
    if settings.fill_holes:
        holes = enclosed_background(margin > 0, valid)
        margin = torch.where(holes, margin.abs(), margin)
    return margin


def enclosed_background(foreground: Tensor, valid: Tensor) -> Tensor:
    """(h, w) bool: valid background cells not 8-connected to a background cell on the border.

    Nothing is enclosed when no border cell is background.
    """
    background = valid & ~foreground
    reached = background & border_cells(valid)
    if not reached.any():
        return torch.zeros_like(background)
    while True:
        grown = background & (F.max_pool2d(reached[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0)
        if torch.equal(grown, reached):
            return background & ~reached
        reached = grown


def upsample_to_image(grid_values: Tensor, geometry: ImageGeometry) -> Tensor:
    """Sample an (h, w) grid map bilinearly at every original pixel centre -> (H, W)."""
    return sample_at_pixels(grid_values[None], geometry)[0]


def cell_pixels(geometry: ImageGeometry, grid_size: tuple[int, int]) -> float:
    """The larger side, in original pixels, of one cell of an (h, w) grid."""
    (in_h, in_w), (grid_h, grid_w) = geometry.input_size, grid_size
    return max(in_w / grid_w / geometry.scale[0], in_h / grid_h / geometry.scale[1])


def masks_of(
    fmap: FeatureMap, settings: SegmentSettings = SegmentSettings(), images: Sequence[Tensor] | None = None
) -> list[Tensor]:
    """Foreground masks of every image of a feature map: (H, W) bool each, at original resolution.

    Args:
        images: the (3, H, W) images in [0, 1], needed for colour refinement (skipped without them).
    """
    native = fmap.grid_size
    fmap = fmap.upsample(settings.grid)
    valid = fmap.valid_cells()
    masks = []
    for i, (features, cells, geometry) in enumerate(zip(fmap.features, valid, fmap.geometries)):
        margin = foreground_margin(features, cells, settings)
        mask = (upsample_to_image(margin, geometry) > 0).cpu()
        if images is not None and settings.refine_band > 0:
            radius = round(settings.refine_band * cell_pixels(geometry, native))
            mask = refine_mask(images[i], mask, radius)
        masks.append(mask)
    return masks


def segment_images(
    images: ImageInput | Sequence[ImageInput],
    *,
    model: str | Extractor = DEFAULT_MODEL,
    settings: SegmentSettings = SegmentSettings(),
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    **overrides: Any,
) -> list[Tensor]:
    """Zero-shot foreground masks.

    Args:
        images: one image or a list (paths, PIL images, (3, H, W) tensors).
        model: a preset name or an :class:`Extractor`; the other keywords build the preset.
    Returns:
        one (H, W) bool tensor per image, True on the foreground.
    """
    batch = list(images) if isinstance(images, (list, tuple)) else [cast(ImageInput, images)]  # a str is one image
    return list(
        _iter_masks(batch, model, settings, weights=weights, random_weights=random_weights, device=device, **overrides)
    )


def _iter_masks(
    batch: list[ImageInput], model: str | Extractor, settings: SegmentSettings, **options: Any
) -> Iterator[Tensor]:
    """Masks one feature-extraction batch at a time (the model is built before the first)."""
    if not batch:
        raise InputError("segment needs at least one image")
    extractor = model if isinstance(model, Extractor) else build_extractor(model, **options)
    for start in range(0, len(batch), settings.batch_size):
        images = [load_image(image) for image in batch[start : start + settings.batch_size]]
        yield from masks_of(extractor.extract(images), settings, images)


def mask_paths(images: Sequence[ImageInput], out_dir: str | os.PathLike) -> list[Path]:
    """``out_dir/<stem>.png`` per image (``<stem>-<i>.png`` when stems repeat)."""
    stems = [Path(image_name(image)).stem or f"image-{i}" for i, image in enumerate(images)]
    repeated = {stem for stem in stems if stems.count(stem) > 1}
    return [Path(out_dir) / (f"{stem}-{i}.png" if stem in repeated else f"{stem}.png") for i, stem in enumerate(stems)]


def save_mask(mask: Tensor, path: str | os.PathLike) -> None:
    """Write an (H, W) bool mask as an 8-bit PNG (255 foreground, 0 background), atomically."""
    buffer = io.BytesIO()
    Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(buffer, format="PNG")
    write_atomically(path, buffer.getvalue())


def run_segment(images: Sequence[ImageInput], out_dir: str | os.PathLike, **options: Any) -> list[Path]:
    """Segment ``images`` and write one PNG mask per image into ``out_dir`` (created)."""
    make_folder(check_output_folder(out_dir, what="mask folder"))
    paths = mask_paths(images, out_dir)
    model = options.pop("model", DEFAULT_MODEL)
    settings = options.pop("settings", SegmentSettings())
    for mask, path in zip(_iter_masks(list(images), model, settings, **options), paths):
        save_mask(mask, path)
    return paths
