"""The page's work: the models, loaded once; features kept per model, image and orientation; matches
and heatmaps computed from them.

A click costs one similarity map and a small picture: each image's features are extracted once per
model (and once more mirrored, for pose alignment) and kept, at most ``AppSettings.cached_features``
of them, the least recently used dropped first. A click's work is small and runs on one CPU thread:
on a shared, loaded CPU, torch's thread pool made it 2 to 14 times slower. Extraction keeps
torch's setting (``--threads``).
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from PIL import Image

from ..errors import InputError, WeightsUnavailableError
from ..features.base import Extractor, FeatureMap
from ..features.config import DEFAULT_MODEL
from ..images import check_points
from ..lru import LRU
from ..matching.matcher import Matcher
from ..matching.points import MatchSettings
from ..matching.pose_align import flip_image
from ..transfer.coco import coco_document, image_record
from ..transfer.examples import KeypointCategory
from ..transfer.labeller import KeypointLabeller, TransferSettings
from ..viz import similarity_overlay
from .settings import AppSettings
from .uploads import Upload, Uploads

HEATMAP_SIDE = 256  # longest side of a heatmap picture (from a 60x60 map); the page stretches it smoothly


def load_matchers(
    model: str | Extractor = DEFAULT_MODEL,
    *,
    models: Sequence[str] = (),
    settings: MatchSettings = MatchSettings(),
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    log: Callable[[str], None] = print,
    **overrides: Any,
) -> dict[str, Matcher]:
    """The models a page offers: ``model`` (a preset built with ``weights`` and the extractor
    ``overrides``, or an :class:`Extractor`), then the presets ``models`` (each from its default
    weights), and always the weight-free ``baseline``.

    A model whose weights cannot be had is left out, with a line to ``log`` saying why.
    """
    matchers: dict[str, Matcher] = {}
    for index, entry in enumerate([model, *models, "baseline"]):
        name = entry if isinstance(entry, str) else entry.name
        if name in matchers:
            continue
        main = index == 0
        try:
            matchers[name] = Matcher(
                entry,
                weights=weights if main else None,
                random_weights=random_weights,
                device=device,
                settings=settings,
                **(overrides if main else {}),
            )
        except WeightsUnavailableError as error:
            log(f"{error}\n-> The page leaves {name} out.")
    return matchers


class Engine:
    """Matches for the page, from features kept across clicks. Thread-safe: model work runs one
    call at a time (the CPU is shared by every request anyway).

    Attributes:
        extractions: how many feature maps were computed so far (each image once per model and orientation).
    """

    def __init__(self, matchers: dict[str, Matcher], uploads: Uploads, settings: AppSettings) -> None:
        if not matchers:
            raise ValueError("the page needs at least one model")
        self.matchers = matchers
        self.uploads = uploads
        self.settings = settings
        self.extractions = 0
        self._features: LRU[tuple[str, str, bool], FeatureMap] = LRU(settings.cached_features)
        self._lock = threading.Lock()

    def models(self) -> list[dict[str, Any]]:
        """``[{"name", "label", "random_weights"}]`` of the models offered, the default first."""
        return [
            {
                "name": name,
                "random_weights": matcher.extractor.random_weights,
                "label": name + (" (random weights)" if matcher.extractor.random_weights else ""),
            }
            for name, matcher in self.matchers.items()
        ]

    def matcher(self, model: str) -> Matcher:
        if model not in self.matchers:
            raise InputError(
                f"model {str(model)[:64]!r} is not offered by this page; choose one of: {', '.join(self.matchers)}"
            )
        return self.matchers[model]

    def features(self, model: str, image_id: str, *, flipped: bool = False) -> FeatureMap:
        """The features of one image (mirrored with ``flipped``) by ``model``: computed once, then kept."""
        matcher = self.matcher(model)
        image = self.uploads.get(image_id)
        key = (model, image.id, flipped)
        with self._lock:
            kept = self._features.get(key)
            if kept is not None:
                return kept
            pixels = self.uploads.pixels(image.id)
            features = matcher.extractor.extract(flip_image(pixels) if flipped else pixels)
            self.extractions += 1
            return self._features.put(key, features)

    def match(
        self,
        model: str,
        image_a: str,
        image_b: str,
        points: Any,
        *,
        pose_align: bool = False,
        heatmap: int | None = None,
    ) -> dict[str, Any]:
        """Find ``points`` of image A in image B.

        Args:
            points: (N, 2) points (x, y) in image A's pixels.
            pose_align: match from mirrored A where it agrees better with B (:mod:`semcorr.matching.pose_align`).
            heatmap: the index of the point whose similarity map over B to draw (``None``: none).
        Returns:
            ``{"result": <what semcorr match writes>, "heatmap": PNG bytes or None, "timing_ms": {...}}``.
        """
        matcher = self.matcher(model)
        a, b = self.uploads.get(image_a), self.uploads.get(image_b)
        checked = check_points(points, (a.height, a.width), image=f"image A ({a.name})")
        if len(checked) > self.settings.max_points:
            raise InputError(
                f"{len(checked)} points: this page matches at most {self.settings.max_points} at once; remove some"
            )
        if heatmap is not None and not 0 <= heatmap < len(checked):
            raise InputError(f"heatmap: point {heatmap} does not exist (there are {len(checked)} points)")
        started = time.perf_counter()
        features_a = self.features(model, a.id)
        features_b = self.features(model, b.id)
        flipped_a = self.features(model, a.id, flipped=True) if pose_align else None
        found = time.perf_counter()
        with self._lock, _one_thread():
            result = matcher.match_features(
                features_a,
                features_b,
                checked,
                image_a=_describe(a),
                image_b=_describe(b),
                flipped_a=flipped_a,
                return_similarity=heatmap is not None,
            )
            matched = time.perf_counter()
            similarity = result.pop("similarity", None)
            picture = None if heatmap is None else heatmap_png(similarity[heatmap], features_b, b)
        done = time.perf_counter()
        timing = {
            "features": (found - started) * 1e3,
            "match": (matched - found) * 1e3,
            "heatmap": (done - matched) * 1e3,
            "total": (done - started) * 1e3,
        }
        return {"result": result, "heatmap": picture, "timing_ms": {k: round(v, 1) for k, v in timing.items()}}

    def transfer(
        self,
        model: str,
        source: str,
        points: Any,
        targets: Sequence[str],
        *,
        pose_align: bool = False,
        min_confidence: float = 0.5,
    ) -> dict[str, Any]:
        """Carry ``points`` of image ``source`` to every image of ``targets`` (label transfer,
        :mod:`semcorr.transfer`: one example, its keypoints named 1..K).

        Returns:
            ``{"targets": [{"id", "name", "width", "height", "url", "points": (K, 2), "confidence": (K,),
            "visible": (K,)}], "coco": <the COCO keypoints document semcorr transfer writes>, "timing_ms"}``.
        """
        matcher = self.matcher(model)
        settings = TransferSettings(match=matcher.settings, pose_align=pose_align, min_confidence=min_confidence)
        example = self.uploads.get(source)
        checked = check_points(points, (example.height, example.width), image=f"the example ({example.name})")
        if not 1 <= len(checked) <= self.settings.max_points:
            raise InputError(f"{len(checked)} points: click 1 to {self.settings.max_points} points on image A first")
        if not 1 <= len(targets) <= self.settings.max_targets:
            raise InputError(f"{len(targets)} target images: give 1 to {self.settings.max_targets}")
        images = [self.uploads.get(target) for target in targets]
        started = time.perf_counter()
        source_map = self.features(model, example.id)
        flipped = self.features(model, example.id, flipped=True) if pose_align else None
        maps = [self.features(model, image.id) for image in images]
        found = time.perf_counter()
        with self._lock, _one_thread():
            labeller = KeypointLabeller(
                source_map, checked[None], torch.ones(1, len(checked), dtype=torch.bool), settings, flipped=flipped
            )
            votes = labeller.label(FeatureMap.join(maps)).votes
        done = time.perf_counter()
        category = KeypointCategory(1, "object", tuple(str(k + 1) for k in range(len(checked))))
        records = [
            image_record(image.name, (image.height, image.width), p.cpu().numpy(), c.cpu().numpy())
            for image, p, c in zip(images, votes.points, votes.confidence)
        ]
        document = coco_document(
            category,
            records,
            min_confidence,
            {
                "description": f"semcorr app label transfer from {example.name}",
                "model": model,
                "random_weights": matcher.extractor.random_weights,
            },
        )
        answer = [
            {
                **image.describe(),
                "points": record["points"],
                "confidence": record["scores"],
                "visible": [score >= min_confidence for score in record["scores"]],
            }
            for image, record in zip(images, records)
        ]
        timing = {
            "features": (found - started) * 1e3,
            "transfer": (done - found) * 1e3,
            "total": (done - started) * 1e3,
        }
        return {"targets": answer, "coco": document, "timing_ms": {k: round(v, 1) for k, v in timing.items()}}


def heatmap_png(similarity: Any, features: FeatureMap, image: Upload) -> bytes:
    """A PNG of one (h, w) similarity map over ``image`` (:func:`semcorr.viz.similarity_overlay`), at
    most :data:`HEATMAP_SIDE` pixels a side."""
    scale = min(1.0, HEATMAP_SIDE / max(image.width, image.height))
    size = (max(1, round(image.height * scale)), max(1, round(image.width * scale)))
    buffer = io.BytesIO()
    Image.fromarray(similarity_overlay(similarity, features.geometries[0], size)).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one CPU thread inside the block (the lock keeps other requests out meanwhile)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _describe(image: Upload) -> dict[str, Any]:
    """How a result names an image (as :func:`semcorr.matching.matcher.describe_image` does)."""
    return {"name": image.name, "width": image.width, "height": image.height}
