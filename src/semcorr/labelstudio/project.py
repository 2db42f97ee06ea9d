"""What a Label Studio project says, read without a model: its labelling config's keypoint labels,
and its annotated tasks as examples. Torch-free.

A keypoint project's config has an ``<Image name="image" value="$image"/>`` and a
``<KeyPointLabels name="kp" toName="image">`` with one ``<Label value="..."/>`` per keypoint;
optionally a ``<RectangleLabels toName="image">`` whose boxes group the keypoints of one object
each. A keypoint result is stored in percent of the image's width and height::

    {"type": "keypointlabels", "from_name": "kp", "to_name": "image", "original_width": 640,
     "original_height": 480, "value": {"x": 41.0, "y": 41.5, "width": 0.75, "keypointlabels": ["nose"]}}

Every annotated task (its latest annotation that was not skipped) is one example; with boxes, each
box is one example holding the keypoints inside it. What cannot be used (a label the config does not
have, a label given twice for one object) is said in one line each and left out.
"""

from __future__ import annotations

import hashlib
import json
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

DEFAULT_POINT_SIZE = 0.75  # a predicted keypoint's drawn size, in percent of the width, when no example gives one


@dataclass(frozen=True)
class KeypointConfig:
    """The keypoint part of a labelling config.

    Attributes:
        from_name: the ``KeyPointLabels`` control's name.
        to_name: the ``Image`` it labels.
        image_key: the task data field holding the image's URL (``$image`` -> ``image``).
        labels: the K keypoint labels, in the config's order.
        box_name: the name of a ``RectangleLabels`` control on the same image, or ``None``.
    """

    from_name: str
    to_name: str
    image_key: str
    labels: tuple[str, ...]
    box_name: str | None = None


def read_label_config(xml: str) -> KeypointConfig:
    """The first ``KeyPointLabels`` of a labelling config and the image it labels.

    Raises:
        InputError: not XML, no ``KeyPointLabels`` with labels, or its ``toName`` is no ``Image``.
    """
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, TypeError, ValueError):
        raise InputError("the labelling config is not XML") from None
    images = {tag.get("name"): tag.get("value", "") for tag in root.iter("Image")}
    for tag in root.iter("KeyPointLabels"):
        labels = tuple(label.get("value", "") for label in tag.iter("Label") if label.get("value"))
        to_name, from_name = tag.get("toName", ""), tag.get("name", "")
        if not labels or not from_name:
            continue
        if to_name not in images or not images[to_name].startswith("$"):
            raise InputError(f'the KeyPointLabels {from_name!r} label {to_name!r}, which is no <Image value="$...">')
        boxes = [box.get("name") for box in root.iter("RectangleLabels") if box.get("toName") == to_name]
        return KeypointConfig(from_name, to_name, images[to_name][1:], labels, boxes[0] if boxes else None)
    raise InputError("the labelling config has no KeyPointLabels with labels: semcorr predicts keypoints")


@dataclass(frozen=True)
class TaskExample:
    """One example: an object's keypoints in one task's image.

    Attributes:
        task: the task's id.
        image: the image's URL as the task gives it.
        points: (K, 2) keypoints (x, y) in percent of the image's width and height (0 where not labelled).
        labelled: (K,) which keypoints are given.
        sizes: (K,) each given keypoint's drawn size (``value.width``).
    """

    task: int
    image: str
    points: tuple[tuple[float, float], ...]
    labelled: tuple[bool, ...]
    sizes: tuple[float, ...]


def project_examples(
    tasks: Sequence[dict[str, Any]], config: KeypointConfig, log: Callable[[str], None]
) -> tuple[TaskExample, ...]:
    """The examples of a project's exported tasks (``GET /api/projects/{id}/export?exportType=JSON``).

    Args:
        tasks: the tasks, each with its ``annotations``.
        log: told, one line each, what is left out and why.
    """
    examples: list[TaskExample] = []
    for task in tasks:
        if not isinstance(task, dict):
            continue
        annotations = [a for a in task.get("annotations") or () if isinstance(a, dict) and not a.get("was_cancelled")]
        image = (task.get("data") or {}).get(config.image_key)
        if not annotations:
            continue
        if not isinstance(image, str) or not image:
            log(f"task {task.get('id')}: no image in its data field {config.image_key!r}; not an example")
            continue
        latest = max(annotations, key=lambda a: (str(a.get("updated_at") or ""), a.get("id") or 0))
        examples += _objects(int(task.get("id") or 0), image, latest.get("result") or [], config, log)
    return tuple(examples)


def _objects(
    task: int, image: str, result: list[Any], config: KeypointConfig, log: Callable[[str], None]
) -> list[TaskExample]:
    """The annotated objects of one annotation's ``result``: one per box, or one for the whole image."""
    keypoints, boxes = [], []
    for region in result:
        if not isinstance(region, dict) or region.get("to_name") != config.to_name:
            continue
        value = region.get("value") or {}
        if region.get("type") == "rectanglelabels" and region.get("from_name") == config.box_name:
            boxes.append(value)
        elif region.get("type") == "keypointlabels":
            names = value.get("keypointlabels") or []
            x, y = value.get("x"), value.get("y")
            if region.get("from_name") != config.from_name or len(names) != 1:
                log(
                    f"task {task}: a keypoint of {region.get('from_name')!r} labelled {names!r} is not one of "
                    f"{config.from_name!r}'s labels; left out"
                )
            elif names[0] not in config.labels:
                log(
                    f"task {task}: keypoint label {str(names[0])[:60]!r} is not in the labelling config "
                    f"({', '.join(config.labels)}); left out"
                )
            elif not (
                isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(x) and math.isfinite(y)
            ):
                log(f"task {task}: keypoint {names[0]!r} has no finite x and y; left out")
            else:
                size = value.get("width")
                keypoints.append(
                    (
                        names[0],
                        float(x),
                        float(y),
                        float(size) if isinstance(size, (int, float)) else DEFAULT_POINT_SIZE,
                    )
                )
    groups: list[list[tuple[str, float, float, float]]] = [[] for _ in boxes] or [[]]
    for point in keypoints:
        inside = [i for i, box in enumerate(boxes) if _inside(point[1], point[2], box)]
        if boxes and not inside:
            log(f"task {task}: keypoint {point[0]!r} lies in no box; left out")
            continue
        groups[inside[0] if inside else 0].append(point)
    objects = []
    for group in groups:
        points = [(0.0, 0.0)] * len(config.labels)
        labelled, sizes = [False] * len(config.labels), [DEFAULT_POINT_SIZE] * len(config.labels)
        for name, x, y, size in group:
            k = config.labels.index(name)
            if labelled[k]:
                log(
                    f"task {task}: keypoint {name!r} is given twice for one object (use a box per object); "
                    "the first is kept"
                )
                continue
            points[k], labelled[k], sizes[k] = (x, y), True, size
        if any(labelled):
            objects.append(TaskExample(task, image, tuple(points), tuple(labelled), tuple(sizes)))
    return objects


def _inside(x: float, y: float, box: dict[str, Any]) -> bool:
    """Whether (x, y) (percent) lies in a rectangle region's value (top-left corner and size, percent;
    rotated boxes are taken unrotated)."""
    try:
        left, top, width, height = (float(box[k]) for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        return False
    return left <= x <= left + width and top <= y <= top + height


def examples_digest(config: KeypointConfig, examples: Sequence[TaskExample]) -> str:
    """A short digest of the labels and examples: it changes whenever an example or the labels change."""
    text = json.dumps([list(config.labels), [[e.task, e.image, e.points, e.labelled] for e in examples]])
    return hashlib.sha256(text.encode()).hexdigest()[:12]
