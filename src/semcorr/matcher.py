"""Point transfer between feature maps, and the :class:`Matcher` API around it.

    matcher = Matcher()                     # the default model, distilldift-us
    out = matcher.match("cat.jpg", "dog.jpg", [[120, 80], [200, 95]])
    out["matches"][0]  # {"source": [120.0, 80.0], "target": [..., ...], "score": 0.71}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from .errors import InputError
from .features import DEFAULT_MODEL, Extractor, FeatureMap, build_extractor
from .images import ImageInput, check_points, image_name, load_image
from .matching import nearest_neighbour, sample_descriptors, similarity_maps, window_soft_argmax
from .pose_align import align_sources, flip_image


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


def transfer_points(source: FeatureMap, target: FeatureMap, points: Tensor,
                    settings: MatchSettings = MatchSettings()) -> Transfer:
    """Find source points in the target images.

    Args:
        source: features of B source images.
        target: features of B target images.
        points: (B, N, 2) source points in source-image pixels (x, y).
    """
    if len(source) != len(target) or points.ndim != 3 or points.shape[0] != len(source):
        raise ValueError(f"need B source maps, B target maps and (B, N, 2) points; got {len(source)}, "
                         f"{len(target)} and {tuple(points.shape)}")
    source, target = source.upsample(settings.grid), target.upsample(settings.grid)
    points = points.to(source.features.device, torch.float32)
    grid_points = torch.stack([g.to_grid(p, source.grid_size) for g, p in zip(source.geometries, points)])
    descriptors = sample_descriptors(source.features, grid_points)
    similarity = similarity_maps(descriptors, target.features)
    valid = target.valid_cells()
    if settings.method == "nearest":
        found, scores = nearest_neighbour(similarity, valid)
    elif settings.method == "window_soft_argmax":
        found, scores = window_soft_argmax(similarity, settings.window, settings.temperature, valid)
    else:
        raise InputError(f"unknown matching method {settings.method!r}; use window_soft_argmax or nearest")
    found = torch.stack([g.from_grid(p, target.grid_size) for g, p in zip(target.geometries, found)])
    return Transfer(found, scores, similarity)


class Matcher:
    """Match points between two images with any extractor.

    Args:
        model: a preset name or an :class:`Extractor` instance.
        weights: weights for the preset (Hugging Face id, folder or checkpoint file).
        random_weights: build the preset untrained (output says so).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        settings: a :class:`MatchSettings`; keyword ``**overrides`` go to the extractor's config.
    """

    def __init__(self, model: str | Extractor = DEFAULT_MODEL, *, weights: str | None = None,
                 random_weights: bool = False, device: str | None = None,
                 settings: MatchSettings = MatchSettings(), **overrides: Any) -> None:
        if isinstance(model, Extractor):
            self.extractor = model
        else:
            self.extractor = build_extractor(model, weights=weights, random_weights=random_weights,
                                             device=device, **overrides)
        self.settings = settings

    def match(self, image_a: ImageInput, image_b: ImageInput, points: Sequence[Sequence[float]] | Tensor,
              *, return_similarity: bool = False, pose_align: bool = False) -> dict[str, Any]:
        """Find ``points`` of image A in image B.

        Args:
            image_a, image_b: paths, PIL images or (3, H, W) tensors.
            points: (N, 2) points (x, y) in image A's pixels.
            return_similarity: also return the (N, h, w) similarity maps over B's grid.
            pose_align: also extract mirrored A and match from it when its mutual nearest
                neighbours with B agree better (:mod:`semcorr.pose_align`); ``"source"`` stays in A's
                own pixels either way.
        Returns:
            ``{"matches": [{"source": [x, y], "target": [x, y], "score": s}, ...], "model": name,
            "random_weights": bool, "image_a": {...}, "image_b": {...}, "settings": {...}}``
            (+ ``"similarity"`` when asked; + ``"pose_align": {"flipped": bool, "distance": d,
            "distance_flipped": d}`` with ``pose_align``).
        """
        pixels_a, pixels_b = load_image(image_a), load_image(image_b)
        source_points = check_points(points, tuple(pixels_a.shape[-2:]), image=f"image A ({image_name(image_a)})")
        orientation = None
        if pose_align:
            features = self.extractor.extract([pixels_a, flip_image(pixels_a), pixels_b])  # decided on the native grid
            source, query, orientation = align_sources(features[0], features[1], features[2], source_points[None])
            transfer = transfer_points(source, features[2], query, self.settings)
        else:
            features = self.extractor.extract([pixels_a, pixels_b])
            transfer = transfer_points(features[0], features[1], source_points[None], self.settings)
        matches = [{"source": [round(float(v), 3) for v in s], "target": [round(float(v), 3) for v in t],
                    "score": round(float(c), 4)}
                   for s, t, c in zip(source_points, transfer.points[0].cpu(), transfer.scores[0].cpu())]
        result: dict[str, Any] = {
            "matches": matches,
            "model": self.extractor.name,
            "random_weights": self.extractor.random_weights,
            "image_a": _describe(image_a, pixels_a),
            "image_b": _describe(image_b, pixels_b),
            "settings": {"extractor": asdict(self.extractor.config), "matching": asdict(self.settings)},
        }
        if self.extractor.random_weights:
            result["warning"] = "features from random weights: the matches carry no meaning"
        if orientation is not None:
            result["pose_align"] = {"flipped": bool(orientation.flipped[0]),
                                    "distance": round(float(orientation.distance[0]), 4),
                                    "distance_flipped": round(float(orientation.distance_flipped[0]), 4)}
        if return_similarity:
            result["similarity"] = transfer.similarity[0].cpu()
        return result


def _describe(source: ImageInput, pixels: Tensor) -> dict[str, Any]:
    return {"name": image_name(source), "width": int(pixels.shape[-1]), "height": int(pixels.shape[-2])}
