"""Pictures of transferred labels, to eyeball a run: one per image, and a contact sheet.

Each keypoint keeps one colour in every picture (its index on matplotlib's ``hsv`` map, as
:func:`semcorr.viz.plot_matches`); the skeleton joins visible keypoints; keypoints written as not
visible are not drawn. Pictures are drawn with Pillow (fast enough for thousands of images) and
written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from PIL import Image, ImageDraw
from torch import Tensor

from ..fileio import write_atomically
from ..images import ImageInput, load_image

THUMBNAIL = 256
SHEET_IMAGES = 48
SHEET_COLUMNS = 8


def keypoint_colours(count: int) -> list[tuple[int, int, int]]:
    colour_map = matplotlib.colormaps["hsv"]
    rgbs = [colour_map(i / max(count, 1))[:3] for i in range(count)]
    return [(int(255 * r), int(255 * g), int(255 * b)) for r, g, b in rgbs]


def _pil(image: ImageInput | Tensor) -> Image.Image:
    pixels = load_image(image).permute(1, 2, 0).numpy()
    return Image.fromarray(np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8))


def draw_keypoints(
    image: ImageInput | Tensor, keypoints: Sequence[float], skeleton: Sequence[Sequence[int]] = ()
) -> Image.Image:
    """The image with its keypoints drawn.

    Args:
        keypoints: COCO ``[x, y, v, ...]``; points with ``v = 0`` are not drawn.
        skeleton: 1-based index pairs (COCO).
    """
    picture = _pil(image)
    draw = ImageDraw.Draw(picture)
    triplets = np.asarray(keypoints, np.float64).reshape(-1, 3)
    colours = keypoint_colours(len(triplets))
    radius = max(2.0, max(picture.size) / 120)
    for a, b in skeleton:
        (xa, ya, va), (xb, yb, vb) = triplets[a - 1], triplets[b - 1]
        if va > 0 and vb > 0:
            draw.line([(xa, ya), (xb, yb)], fill=(255, 255, 255), width=max(1, round(radius / 2)))
    for (x, y, v), colour in zip(triplets, colours):
        if v > 0:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255))
    return picture


def save_picture(picture: Image.Image, path: str | Path) -> None:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    write_atomically(path, buffer.getvalue())


def picture_name(file_name: str) -> str:
    """The picture's file name for an image key (``sub/cat.jpg`` -> ``sub__cat.jpg.png``)."""
    return file_name.replace("/", "__") + ".png"


def contact_sheet(entries: Sequence[tuple[Image.Image, str]], columns: int = SHEET_COLUMNS) -> Image.Image:
    """Thumbnails (at most ``THUMBNAIL`` px a side) in a grid, each with its caption below."""
    rows = max(1, math.ceil(len(entries) / columns))
    caption = 14
    sheet = Image.new("RGB", (columns * THUMBNAIL, rows * (THUMBNAIL + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (picture, text) in enumerate(entries):
        thumbnail = picture.copy()
        thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
        left, top = (index % columns) * THUMBNAIL, (index // columns) * (THUMBNAIL + caption)
        sheet.paste(thumbnail, (left + (THUMBNAIL - thumbnail.width) // 2, top + (THUMBNAIL - thumbnail.height) // 2))
        draw.text((left + 4, top + THUMBNAIL), text[-40:], fill=(0, 0, 0))
    return sheet


def write_contact_sheet(
    document: dict[str, Any], image_paths: dict[str, Path], path: str | Path, limit: int = SHEET_IMAGES
) -> int:
    """A contact sheet of at most ``limit`` labelled images of a COCO document, evenly spread over it.

    Args:
        image_paths: the image file of each ``file_name``.
    Returns:
        how many images it shows.
    """
    images, annotations = document["images"], document["annotations"]
    if not images:
        return 0
    chosen = sorted({round(i) for i in np.linspace(0, len(images) - 1, min(limit, len(images)))})
    skeleton = document["categories"][0].get("skeleton", [])
    entries = [
        (
            draw_keypoints(image_paths[images[i]["file_name"]], annotations[i]["keypoints"], skeleton),
            images[i]["file_name"],
        )
        for i in chosen
    ]
    save_picture(contact_sheet(entries), path)
    return len(entries)
