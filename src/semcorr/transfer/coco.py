"""The labels of a folder as a COCO keypoints file.

One record per image of the folder (a plain dict, as kept in the resume parts):
``{"file_name", "width", "height", "points": [[x, y], ...], "scores": [...]}`` (``"example": true``
for an image of the examples, whose own labels are kept), or ``{"file_name", "error"}`` for an
image that could not be read. :func:`coco_document` turns them into::

    {"info": {...}, "images": [{"id", "file_name", "width", "height"}, ...],
     "annotations": [{"id", "image_id", "category_id", "keypoints": [x, y, v, ...], "num_keypoints",
                      "keypoint_scores": [...], "score", "bbox", "area", "iscrowd": 0}, ...],
     "categories": [the examples' category, names and skeleton unchanged],
     "skipped": [{"file_name", "error"}, ...]}

``v`` is 2 where the keypoint's score reaches ``min_confidence``, else 0 with x = y = 0 (COCO's
"not labelled"): a point the examples do not vouch for is left out rather than guessed.
``keypoint_scores`` holds every keypoint's confidence (also those left out), ``score`` their mean;
``bbox`` (x, y, width, height) is the extent of the visible keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .examples import Example, KeypointCategory

POINT_DECIMALS, SCORE_DECIMALS = 2, 4


def image_record(name: str, size: tuple[int, int], points: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """The record of a labelled image: (K, 2) points in its pixels and (K,) scores, rounded."""
    return {
        "file_name": name,
        "width": int(size[1]),
        "height": int(size[0]),
        "points": [[round(float(x), POINT_DECIMALS), round(float(y), POINT_DECIMALS)] for x, y in points],
        "scores": [round(float(s), SCORE_DECIMALS) for s in scores],
    }


def example_record(name: str, example: Example) -> dict[str, Any]:
    """The record of an image that is one of the examples: its own labels, score 1."""
    record = image_record(name, example.size, example.points, example.labelled.astype(np.float64))
    record["example"] = True
    return record


def error_record(name: str, message: str) -> dict[str, Any]:
    return {"file_name": name, "error": message}


def annotation_of(
    record: dict[str, Any], number: int, category: KeypointCategory, min_confidence: float
) -> dict[str, Any]:
    """The COCO annotation (id ``number``) of a labelled image's record."""
    keypoints, visible = [], []
    for (x, y), score in zip(record["points"], record["scores"]):
        shown = score >= min_confidence if not record.get("example") else score > 0
        keypoints += [x, y, 2] if shown else [0, 0, 0]
        if shown:
            visible.append((x, y))
    if visible:
        (x1, y1), (x2, y2) = np.min(visible, axis=0), np.max(visible, axis=0)
        box = [
            round(float(x1), POINT_DECIMALS),
            round(float(y1), POINT_DECIMALS),
            round(float(x2 - x1), POINT_DECIMALS),
            round(float(y2 - y1), POINT_DECIMALS),
        ]
    else:
        box = [0, 0, 0, 0]
    scores = record["scores"]
    return {
        "id": number,
        "image_id": number,
        "category_id": category.id,
        "keypoints": keypoints,
        "num_keypoints": len(visible),
        "keypoint_scores": scores,
        "score": round(float(np.mean(scores)), SCORE_DECIMALS) if scores else 0.0,
        "bbox": box,
        "area": round(box[2] * box[3], POINT_DECIMALS),
        "iscrowd": 0,
    }


def coco_document(
    category: KeypointCategory, records: Sequence[dict[str, Any]], min_confidence: float, info: dict[str, Any]
) -> dict[str, Any]:
    """The COCO keypoints document of the records, in their order (image and annotation ids 1, 2, ...)."""
    images: list[dict[str, Any]] = []
    annotations, skipped = [], []
    for record in records:
        if "error" in record:
            skipped.append(record)
            continue
        number = len(images) + 1
        images.append(
            {"id": number, "file_name": record["file_name"], "width": record["width"], "height": record["height"]}
        )
        annotations.append(annotation_of(record, number, category, min_confidence))
    return {
        "info": info,
        "images": images,
        "annotations": annotations,
        "categories": [category.to_coco()],
        "skipped": skipped,
    }
