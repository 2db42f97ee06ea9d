"""The :class:`Matcher` API: match points between two images with any extractor.

    matcher = Matcher()                     # the default model, distilldift-us
    out = matcher.match("cat.jpg", "dog.jpg", [[120, 80], [200, 95]])
    out["matches"][0]  # {"source": [120.0, 80.0], "target": [..., ...], "score": 0.71}

:func:`match_images` is ``semcorr match``: the same, plus the JSON file and the picture.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from torch import Tensor

from ..features.base import Extractor, FeatureMap
from ..features.config import DEFAULT_MODEL
from ..features.registry import build_extractor
from ..fileio import check_output_file, write_json
from ..images import ImageInput, check_points, image_name, load_image
from ..viz import plot_matches
from .points import MatchSettings, transfer_points
from .pose_align import align_sources, flip_image


class Matcher:
    """Match points between two images with any extractor.

    Args:
        model: a preset name or an :class:`Extractor` instance.
        weights: weights for the preset (Hugging Face id, folder or checkpoint file).
        random_weights: build the preset untrained (output says so).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        settings: a :class:`MatchSettings`; keyword ``**overrides`` go to the extractor's config.
    """

    def __init__(
        self,
        model: str | Extractor = DEFAULT_MODEL,
        *,
        weights: str | None = None,
        random_weights: bool = False,
        device: str | None = None,
        settings: MatchSettings = MatchSettings(),
        **overrides: Any,
    ) -> None:
        if isinstance(model, Extractor):
            self.extractor = model
        else:
            self.extractor = build_extractor(
                model, weights=weights, random_weights=random_weights, device=device, **overrides
            )
        self.settings = settings

    def match(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        points: Sequence[Sequence[float]] | Tensor,
        *,
        return_similarity: bool = False,
        pose_align: bool = False,
    ) -> dict[str, Any]:
        """Find ``points`` of image A in image B.

        Args:
            image_a: a path, PIL image or (3, H, W) tensor.
            image_b: the same for image B.
            points: (N, 2) points (x, y) in image A's pixels.
            return_similarity: also return the (N, h, w) similarity maps over B's grid.
            pose_align: also extract mirrored A and match from it when its mutual nearest
                neighbours with B agree better (:mod:`semcorr.matching.pose_align`); ``"source"`` stays in A's
                own pixels either way.
        Returns:
            ``{"matches": [{"source": [x, y], "target": [x, y], "score": s}, ...], "model": name,
            "random_weights": bool, "image_a": {...}, "image_b": {...}, "settings": {...}}``
            (+ ``"similarity"`` when asked; + ``"pose_align": {"flipped": bool, "distance": d,
            "distance_flipped": d}`` with ``pose_align``).
        """
        pixels_a, pixels_b = load_image(image_a), load_image(image_b)
        source_points = check_points(
            points, (pixels_a.shape[-2], pixels_a.shape[-1]), image=f"image A ({image_name(image_a)})"
        )
        if pose_align:
            features = self.extractor.extract([pixels_a, flip_image(pixels_a), pixels_b])  # decided on the native grid
            features_a, flipped_a, features_b = features[0], features[1], features[2]
        else:
            features = self.extractor.extract([pixels_a, pixels_b])
            features_a, flipped_a, features_b = features[0], None, features[1]
        return self.match_features(
            features_a,
            features_b,
            source_points,
            image_a=describe_image(image_a, pixels_a),
            image_b=describe_image(image_b, pixels_b),
            flipped_a=flipped_a,
            return_similarity=return_similarity,
        )

    def match_features(
        self,
        features_a: FeatureMap,
        features_b: FeatureMap,
        points: Tensor,
        *,
        image_a: dict[str, Any],
        image_b: dict[str, Any],
        flipped_a: FeatureMap | None = None,
        return_similarity: bool = False,
    ) -> dict[str, Any]:
        """:meth:`match` on features already extracted (by ``self.extractor``; e.g. kept across calls).

        Args:
            features_a: the features of image A (one image).
            features_b: the features of image B (one image).
            points: (N, 2) checked points (x, y) in image A's pixels (:func:`~semcorr.images.check_points`).
            image_a: ``{"name": ..., "width": ..., "height": ...}`` (:func:`describe_image`).
            image_b: the same for image B.
            flipped_a: the features of mirrored image A: pose alignment, decided on their native grid.
        Returns:
            :meth:`match`'s result.
        """
        orientation = None
        if flipped_a is not None:
            source, query, orientation = align_sources(features_a, flipped_a, features_b, points[None])
            transfer = transfer_points(source, features_b, query, self.settings)
        else:
            transfer = transfer_points(features_a, features_b, points[None], self.settings)
        matches = [
            {
                "source": [round(float(v), 3) for v in s],
                "target": [round(float(v), 3) for v in t],
                "score": round(float(c), 4),
            }
            for s, t, c in zip(points, transfer.points[0].cpu(), transfer.scores[0].cpu())
        ]
        result: dict[str, Any] = {
            "matches": matches,
            "model": self.extractor.name,
            "random_weights": self.extractor.random_weights,
            "image_a": image_a,
            "image_b": image_b,
            "settings": {"extractor": asdict(self.extractor.config), "matching": asdict(self.settings)},
        }
        if self.extractor.random_weights:
            result["warning"] = "features from random weights: the matches carry no meaning"
        if orientation is not None:
            result["pose_align"] = {
                "flipped": bool(orientation.flipped[0]),
                "distance": round(float(orientation.distance[0]), 4),
                "distance_flipped": round(float(orientation.distance_flipped[0]), 4),
            }
        if return_similarity:
            result["similarity"] = transfer.similarity[0].cpu()
        return result


def describe_image(source: ImageInput, pixels: Tensor) -> dict[str, Any]:
    """How a result names an image: ``{"name": ..., "width": W, "height": H}``."""
    return {"name": image_name(source), "width": int(pixels.shape[-1]), "height": int(pixels.shape[-2])}


def match_images(
    image_a: ImageInput,
    image_b: ImageInput,
    points: Sequence[Sequence[float]] | Tensor,
    *,
    model: str | Extractor = DEFAULT_MODEL,
    settings: MatchSettings = MatchSettings(),
    pose_align: bool = False,
    out: str | os.PathLike | None = None,
    show: str | os.PathLike | None = None,
    title: str | None = None,
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """``semcorr match``: find ``points`` of image A in image B with :class:`Matcher`, write the
    result as JSON to ``out`` (atomically) and draw the matches side by side into the PNG ``show``.

    Returns:
        :meth:`Matcher.match`'s result.
    """
    if out is not None:
        check_output_file(out, suffixes=(".json",), what="match result")
    if show is not None:
        check_output_file(show, suffixes=(".png",), what="picture")
    matcher = Matcher(
        model, weights=weights, random_weights=random_weights, device=device, settings=settings, **overrides
    )
    result = matcher.match(image_a, image_b, points, pose_align=pose_align)
    if out is not None:
        write_json(out, result)
    if show is not None:
        label = result["model"] + (" (random weights)" if result["random_weights"] else "")
        plot_matches(image_a, image_b, result["matches"], show, title=title or label)
    return result
