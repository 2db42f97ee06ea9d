"""``semcorr transfer``: label a folder of images from a few annotated examples.

    from semcorr.transfer import transfer_keypoints
    summary = transfer_keypoints("examples.json", "cats/", "labels.json", model="baseline")

The examples (:mod:`.examples`) are checked, the output checked writable and the folder listed
before the model is loaded. The examples' features are computed once (and their mirror images'
with pose alignment); the folder's images are then read (one thread ahead), extracted in batches
and labelled by :class:`~.labeller.KeypointLabeller`: per target image one feature extraction plus
matching, whatever the number of examples. Finished batches are kept in ``labels.json.partial/``
(:mod:`.resume`), so a killed run resumes where it stopped; the COCO file (:mod:`.coco`) is written
atomically at the end. An unreadable image is reported on stderr and listed under ``skipped``
(``on_error="stop"`` ends the run instead). Images that are examples keep their own labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..errors import InputError
from ..features.base import Extractor, FeatureMap
from ..features.config import DEFAULT_MODEL
from ..features.registry import resolve_extractor
from ..fileio import check_output_file, check_output_folder, make_folder, write_json
from ..images import ImageItem, list_images, load_image
from ..matching.pose_align import flip_image
from .coco import annotation_of, coco_document, error_record, example_record, image_record
from .examples import Example, ExampleSet, read_examples
from .labeller import KeypointLabeller, Labels, TransferSettings
from .leftright import left_right_partners
from .resume import PartialRun
from .sheet import draw_keypoints, picture_name, save_picture, write_contact_sheet

CONFIDENCE_RULE = (
    "the point is the cycle-weighted mode of the examples' votes; its confidence is the mean of the "
    "better half of its cycle confidences into the examples labelling the keypoint "
    "(semcorr.transfer.vote)"
)


def example_labeller(
    extractor: Extractor, examples: ExampleSet, settings: TransferSettings, partners: np.ndarray | None = None
) -> KeypointLabeller:
    """A :class:`KeypointLabeller` for an example set: each example image extracted once (and its
    mirror image with pose alignment)."""
    paths = list(dict.fromkeys(example.path for example in examples.examples))
    pixels = [load_image(path) for path in paths]
    native = _extract(extractor, pixels, settings.batch_size)
    flipped = _extract(extractor, [flip_image(p) for p in pixels], settings.batch_size) if settings.pose_align else None
    rows = [paths.index(example.path) for example in examples.examples]
    points = torch.from_numpy(np.stack([e.points for e in examples.examples])).float()
    labelled = torch.from_numpy(np.stack([e.labelled for e in examples.examples]))
    return KeypointLabeller(
        _rows(native, rows),
        points,
        labelled,
        settings,
        flipped=None if flipped is None else _rows(flipped, rows),
        partners=None if partners is None else torch.from_numpy(partners),
    )


def _extract(extractor: Extractor, pixels: list[torch.Tensor], batch_size: int) -> FeatureMap:
    return FeatureMap.join([extractor.extract(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)])


def _rows(fmap: FeatureMap, rows: list[int]) -> FeatureMap:
    return FeatureMap(fmap.features[rows], tuple(fmap.geometries[i] for i in rows), fmap.model, fmap.random_weights)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(items: Sequence[ImageItem]) -> list[tuple[ImageItem, torch.Tensor | str]]:
    """Each image's pixels, or the one-line message of why it cannot be read."""
    loaded: list[tuple[ImageItem, torch.Tensor | str]] = []
    for item in items:
        try:
            loaded.append((item, load_image(item.path)))
        except InputError as error:
            loaded.append((item, " ".join(str(error).split())))
    return loaded


def _records(loaded: list[tuple[ImageItem, torch.Tensor | str]], labels: Labels | None) -> list[dict[str, Any]]:
    records, row = [], 0
    for item, pixels in loaded:
        if isinstance(pixels, str):
            records.append(error_record(item.key, pixels))
            continue
        assert labels is not None  # an image loaded, so the batch was labelled
        votes = labels.votes
        records.append(
            image_record(
                item.key,
                (pixels.shape[-2], pixels.shape[-1]),
                votes.points[row].cpu().numpy(),
                votes.confidence[row].cpu().numpy(),
            )
        )
        row += 1
    return records


def transfer_keypoints(
    examples: str | os.PathLike | ExampleSet,
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str | Extractor = DEFAULT_MODEL,
    settings: TransferSettings = TransferSettings(),
    left_right: str | None = None,
    show: str | os.PathLike | None = None,
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Label every image of a folder (or list file) with the examples' keypoints; write COCO keypoints.

    Args:
        examples: the examples file (COCO keypoints or ``{"image.jpg": {"name": [x, y]}}``; image
            names relative to its folder, then to ``images``), or an :class:`ExampleSet`.
        images: a folder (searched recursively) or a text file listing images.
        out: the ``.json`` file to write (:mod:`.coco`); ``out.partial/`` holds a run in progress.
        model: a preset name or an :class:`Extractor`; ``weights``, ``random_weights``, ``device``
            and ``**overrides`` build the preset.
        settings: :class:`TransferSettings` (confidence threshold, tolerances, batch size, pose
            alignment, what to do with unreadable images).
        left_right: with pose alignment, the left/right partners (:mod:`.leftright`; default: by name).
        show: a folder for one picture per image (``<file_name with / as __>.png``) and
            ``contact_sheet.png``.
    Returns:
        a summary: ``images`` (in the folder), ``labelled``, ``examples_in_folder``, ``skipped``
        (``[{"file_name", "error"}]``), ``resumed`` (images done by an earlier run), ``seconds`` and
        ``images_per_s`` (this run's target images: reading, features, matching, writing; model
        and example features excluded), ``setup_seconds``, ``visible_fraction``, ``model``, ...
    """
    started = time.perf_counter()
    out = check_output_file(out, suffixes=(".json",), what="labels file")
    if show is not None:
        show = check_output_folder(show, what="--show folder")
    example_set = examples if isinstance(examples, ExampleSet) else read_examples(examples, [images])
    items = list_images(images)
    names = example_set.category.keypoints
    partners, pairs = left_right_partners(left_right, names) if settings.pose_align else (None, [])
    by_path: dict[Path, Example] = {}
    for example in example_set.examples:
        by_path.setdefault(example.path.resolve(), example)
    examples_in_folder = {item.key: by_path[item.path.resolve()] for item in items if item.path.resolve() in by_path}
    targets = [item for item in items if item.key not in examples_in_folder]
    identity = {
        "examples": str(example_set.source),
        "examples_sha256": _digest(example_set.source),
        "model": model if isinstance(model, str) else model.name,
        "weights": weights,
        "random_weights": random_weights,
        "overrides": {k: str(v) for k, v in sorted(overrides.items())},
        "left_right": pairs,
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k not in ("batch_size", "on_error")},
    }
    with PartialRun(out, identity) as partial:
        extractor = resolve_extractor(model, weights=weights, random_weights=random_weights, device=device, **overrides)
        remaining = [item for item in targets if item.key not in partial.records]
        labeller = example_labeller(extractor, example_set, settings, partners) if remaining else None
        if show is not None:
            make_folder(show)
        setup = time.perf_counter() - started
        begun = time.perf_counter()
        chunks = [remaining[i : i + settings.batch_size] for i in range(0, len(remaining), settings.batch_size)]
        with (
            ThreadPoolExecutor(max_workers=1) as reader,
            tqdm(
                total=len(targets),
                initial=len(targets) - len(remaining),
                unit="img",
                desc="transfer",
                disable=not progress,
            ) as bar,
        ):
            ahead = reader.submit(_load, chunks[0]) if chunks else None
            for index in range(len(chunks)):
                assert ahead is not None and labeller is not None  # there are chunks of remaining images
                loaded = ahead.result()
                ahead = reader.submit(_load, chunks[index + 1]) if index + 1 < len(chunks) else None
                for _item, pixels in loaded:
                    if isinstance(pixels, str):
                        if settings.on_error == "stop":
                            raise InputError(pixels)
                        bar.write(f"semcorr: skipped {pixels}", file=sys.stderr)
                readable = [pixels for _, pixels in loaded if not isinstance(pixels, str)]
                with torch.inference_mode():
                    labels = labeller.label(extractor.extract(readable)) if readable else None
                records = _records(loaded, labels)
                partial.add(records)
                if show is not None:
                    _draw(show, loaded, records, example_set, settings.min_confidence)
                bar.update(len(loaded))
        seconds = time.perf_counter() - begun
        records = [
            example_record(item.key, examples_in_folder[item.key])
            if item.key in examples_in_folder
            else partial.records[item.key]
            for item in items
        ]
        info = {
            "description": f"keypoints transferred by semcorr {__version__} from {len(example_set.examples)} "
            f"example(s)",
            "examples": str(example_set.source),
            "model": extractor.name,
            "random_weights": bool(extractor.random_weights),
            "confidence": CONFIDENCE_RULE,
            "left_right": [list(pair) for pair in pairs],
            "settings": {"transfer": identity["settings"], "extractor": dataclasses.asdict(extractor.config)},
        }
        document = coco_document(example_set.category, records, settings.min_confidence, info)
        write_json(out, document, indent=None)
        partial.finish()
    if show is not None:
        write_contact_sheet(document, {item.key: item.path for item in items}, Path(show) / "contact_sheet.png")
    visible = [v for a in document["annotations"] for v in a["keypoints"][2::3]]
    labelled = sum("error" not in partial.records[item.key] for item in remaining)  # by this run
    return {
        "out": str(out),
        "images": len(items),
        "labelled": len(document["images"]) - len(examples_in_folder),
        "examples": len(example_set.examples),
        "examples_in_folder": len(examples_in_folder),
        "skipped": document["skipped"],
        "resumed": len(targets) - len(remaining),
        "visible_fraction": round(float(np.mean(np.asarray(visible) > 0)), 4) if visible else 0.0,
        "seconds": round(seconds, 3),
        "images_per_s": round(labelled / seconds, 3) if seconds > 0 and labelled else None,
        "setup_seconds": round(setup, 3),
        "model": extractor.name,
        "random_weights": bool(extractor.random_weights),
        "device": str(extractor.device),
        "precision": extractor.config.precision,
    }


def _draw(
    folder: Path,
    loaded: list[tuple[ImageItem, torch.Tensor | str]],
    records: list[dict[str, Any]],
    examples: ExampleSet,
    min_confidence: float,
) -> None:
    for (item, pixels), record in zip(loaded, records):
        if isinstance(pixels, str):
            continue
        keypoints = annotation_of(record, 0, examples.category, min_confidence)["keypoints"]
        save_picture(draw_keypoints(pixels, keypoints, examples.category.skeleton), folder / picture_name(item.key))
