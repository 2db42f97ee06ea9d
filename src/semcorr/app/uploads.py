"""The page's images (uploads): files checked against the limits, kept in a temporary folder, and the
example images (scikit-image's, read where scikit-image installed them).

Every file the page writes is in the uploads folder (a :class:`tempfile.TemporaryDirectory` of
:func:`semcorr.app.create_server`, removed when the server closes): each image's uploaded bytes
and a PNG of at most :data:`DISPLAY_SIDE` pixels a side that the page shows (decoded as semcorr
decodes it: EXIF orientation applied, transparency over white).
"""

from __future__ import annotations

import io
import re
import secrets
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..fileio import write_atomically
from ..images import load_image
from .settings import AppSettings

DISPLAY_SIDE = 1024  # longest side of the picture the page shows
PIXELS_HINT = "; use a smaller image (or start the page with a higher --max-megapixels)"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Upload:
    """One image of the page.

    Attributes:
        id: the name the API knows it by.
        name: the file name the user gave (shown, and written into match results).
        path: the image file.
        width, height: its size in pixels (as semcorr loads it).
        display: the PNG the page shows.
        example: an example image (never dropped).
    """

    id: str
    name: str
    path: Path
    width: int
    height: int
    display: Path
    example: bool = False

    def describe(self) -> dict[str, object]:
        """What the page is told: ``{"id", "name", "width", "height", "url"}``."""
        return {
            "id": self.id,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "url": f"/api/images/{self.id}.png",
        }


class Uploads:
    """Images kept for the page: at most ``settings.max_images`` uploads (the oldest dropped first),
    plus the examples. Thread-safe."""

    def __init__(self, folder: str | Path, settings: AppSettings) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self._images: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()

    def add_example(self, path: Path, image_id: str) -> Upload:
        """Register an image file shipped with a package (read in place, not copied)."""
        pixels = load_image(path)
        return self._keep(
            Upload(
                image_id,
                path.name,
                path,
                pixels.shape[2],
                pixels.shape[1],
                self._write_display(image_id, pixels),
                example=True,
            )
        )

    def add_upload(self, data: bytes, name: str) -> Upload:
        """Check an uploaded file against the limits and keep it.

        Raises:
            InputError: over the size or pixel limit, or not a readable image; the message names the file.
        """
        name = clean_name(name)
        if len(data) > self.settings.max_upload_bytes:
            raise InputError(too_large_message(name, len(data), self.settings.max_upload_bytes))
        image_id = secrets.token_hex(8)
        path = self.folder / image_id
        write_atomically(path, data)
        try:
            _check_pixels(path, name, self.settings.max_pixels)
            pixels = load_image(path, max_pixels=self.settings.max_pixels)
            upload = Upload(
                image_id, name, path, pixels.shape[2], pixels.shape[1], self._write_display(image_id, pixels)
            )
        except InputError as error:
            path.unlink(missing_ok=True)
            raise InputError(str(error).replace(str(path), name)) from None
        return self._keep(upload)

    def get(self, image_id: str) -> Upload:
        """The image ``image_id``; an :class:`InputError` when the server does not have it."""
        with self._lock:
            image = self._images.get(image_id) if isinstance(image_id, str) and _ID.fullmatch(image_id) else None
        if image is None:
            raise InputError(
                f"image {str(image_id)[:64]!r} is not on the server (dropped, or the server restarted); upload it again"
            )
        return image

    def pixels(self, image_id: str) -> torch.Tensor:
        """(3, H, W) float32 pixels of ``image_id`` (:func:`semcorr.images.load_image`)."""
        return load_image(self.get(image_id).path)  # checked against the limits when it came

    def examples(self) -> list[Upload]:
        with self._lock:
            return [image for image in self._images.values() if image.example]

    def _keep(self, image: Upload) -> Upload:
        with self._lock:
            self._images[image.id] = image
            uploads = [key for key, kept in self._images.items() if not kept.example]
            for key in uploads[: max(0, len(uploads) - self.settings.max_images)]:
                dropped = self._images.pop(key)
                dropped.path.unlink(missing_ok=True)
                dropped.display.unlink(missing_ok=True)
        return image

    def _write_display(self, image_id: str, pixels: torch.Tensor) -> Path:
        """Write the PNG the page shows (at most :data:`DISPLAY_SIDE` a side)."""
        array = (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        picture = Image.fromarray(array)
        picture.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        path = self.folder / f"{image_id}.png"
        write_atomically(path, buffer.getvalue())
        return path


def _check_pixels(path: Path, name: str, limit: int) -> None:
    """Refuse an image file over ``limit`` pixels from its header, before decoding it.

    Raises:
        InputError: ``{name}: WxH pixels (N Mpx) is over this page's limit of L Mpx; use a smaller ...``.
    """
    over = f"is over this page's limit of {limit / 1e6:g} Mpx{PIXELS_HINT}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise InputError(f"{name}: its size {over}") from None
    except Exception:  # not an image, or unreadable: load_image says what is wrong
        return
    if width * height > limit:
        raise InputError(f"{name}: {width}x{height} pixels ({width * height / 1e6:.1f} Mpx) {over}")


def clean_name(name: str) -> str:
    """A file name from the user, safe to show: its last path part, printable, at most 120 characters."""
    name = re.split(r"[\\/]", str(name))[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:120] or "upload"


def too_large_message(name: str, size: int, limit: int) -> str:
    """The one message for a file over the upload limit (the page says the same before sending one)."""
    return (
        f"{name}: {size / 1e6:.1f} MB is over this page's upload limit of {limit / 1e6:g} MB; use a smaller "
        "file (or start the page with a higher --max-upload-mb)"
    )
