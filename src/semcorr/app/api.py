"""The page's JSON API: one function per request, free of HTTP (:mod:`.server` carries them).

    GET  /api/config            -> config(engine)
    POST /api/images            -> upload(engine, data, name)     (the file's bytes as the body)
    POST /api/prepare           -> prepare(engine, body)          (features ahead of the first click)
    POST /api/match             -> match(engine, body)            (a click: matches and a heatmap)
    POST /api/transfer          -> transfer(engine, body)         (clicked points carried to a batch)

A new tab adds its function here and one line to :data:`JSON_ROUTES`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..errors import InputError
from .engine import Engine


def config(engine: Engine) -> dict[str, Any]:
    """What the page needs to start: the models, the examples, the limits."""
    examples = [image.describe() for image in engine.uploads.examples()]
    settings = engine.settings
    return {
        "version": __version__,
        "models": engine.models(),
        "examples": examples,
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_pixels,
            "max_points": settings.max_points,
            "max_targets": settings.max_targets,
        },
    }


def upload(engine: Engine, data: bytes, name: str) -> dict[str, Any]:
    """Keep an uploaded image: ``{"id", "name", "width", "height", "url"}``."""
    return engine.uploads.add_upload(data, name).describe()


def prepare(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    """Compute the features of ``body["images"]`` by ``body["model"]`` (image A, the first, also
    mirrored with ``body["pose_align"]``), so that the first click is fast: ``{"ms": ...}``."""
    model = _field(body, "model", str)
    images = _field(body, "images", list)
    pose_align = _field(body, "pose_align", bool, default=False)
    if len(images) > engine.settings.cached_features // 2:
        raise InputError(
            f"{len(images)} images: this page keeps the features of at most "
            f"{engine.settings.cached_features // 2} at once"
        )
    started = time.perf_counter()
    for index, image_id in enumerate(images):
        engine.features(model, image_id)
        if pose_align and index == 0:
            engine.features(model, image_id, flipped=True)
    return {"ms": round((time.perf_counter() - started) * 1e3, 1)}


def match(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    """``{"model", "image_a", "image_b", "points": [[x, y], ...], "pose_align", "heatmap": index | null}``
    -> ``{"result": <semcorr match's JSON>, "result_json": its text as semcorr match writes it,
    "heatmap": "data:image/png;base64,..." | null, "timing_ms": {...}}``."""
    heatmap = _field(body, "heatmap", int, default=None)
    answer = engine.match(
        _field(body, "model", str),
        _field(body, "image_a", str),
        _field(body, "image_b", str),
        _field(body, "points", list),
        pose_align=_field(body, "pose_align", bool, default=False),
        heatmap=heatmap,
    )
    picture = answer["heatmap"]
    return {
        "result": answer["result"],
        "result_json": json.dumps(answer["result"], indent=2, allow_nan=False) + "\n",
        "heatmap": None if picture is None else "data:image/png;base64," + base64.b64encode(picture).decode(),
        "timing_ms": answer["timing_ms"],
    }


def transfer(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    """``{"model", "source", "points": [[x, y], ...], "targets": [id, ...], "pose_align", "min_confidence"}``
    -> :meth:`Engine.transfer`'s answer, plus ``"coco_json"``: the labels as ``semcorr transfer`` writes them."""
    confidence = _field(body, "min_confidence", (int, float), default=0.5)
    answer = engine.transfer(
        _field(body, "model", str),
        _field(body, "source", str),
        _field(body, "points", list),
        _field(body, "targets", list),
        pose_align=_field(body, "pose_align", bool, default=False),
        min_confidence=float(confidence),
    )
    return {**answer, "coco_json": json.dumps(answer.pop("coco"), indent=1, allow_nan=False) + "\n"}


# POST routes whose body and answer are JSON objects.
JSON_ROUTES: dict[str, Callable[[Engine, dict[str, Any]], dict[str, Any]]] = {
    "/api/prepare": prepare,
    "/api/match": match,
    "/api/transfer": transfer,
}

_MISSING = object()


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """``body[name]``, which must be a ``kind`` (or absent / null where there is a default)."""
    value = body.get(name)
    if value is None and default is not _MISSING:
        return default
    if not isinstance(value, kind) or (kind in (int, (int, float)) and isinstance(value, bool)):
        expected = {
            str: "a string",
            list: "a list",
            bool: "true or false",
            int: "an integer",
            (int, float): "a number",
        }[kind]
        raise InputError(f"request field {name!r} must be {expected}")
    return value
