"""Loading images, listing image folders and checking keypoints, with one-line errors that name the culprit.

Every image that enters semcorr goes through :func:`load_image`, which turns a path, a PIL image,
a tensor or a numpy array into a (3, H, W) float32 RGB tensor in [0, 1]. Conversions:

* EXIF orientation is applied (the tensor is the image as a viewer shows it).
* Transparency (RGBA, LA, palette or grey with a transparent colour) is composited over **white**.
* 16-bit grey (``I;16*``) is divided by 65535; 32-bit ``I`` likewise when its values fit in
  16 bits (Pillow's usual carrier for 16-bit data), else by 2**31 - 1 with negatives clipped to 0.
  ``F`` (float) images are clipped to [0, 1].
* Pillow 13 reduces 16-bit-per-channel RGB/RGBA/LA PNGs to 8 bits when opening them, so that
  precision is lost before semcorr sees it.

Coordinates are continuous pixel coordinates: an image of size (H, W) covers [0, W] x [0, H] and
the centre of pixel (col, row) is (col + 0.5, row + 0.5).
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError
from .geometry import ImageGeometry

ImageInput = str | os.PathLike | Image.Image | torch.Tensor | np.ndarray
DEFAULT_MAX_PIXELS: int = 100_000_000  # refuse larger images (decompression bombs)

# What Pillow raises when the bytes of an identified image cannot be decoded.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
SMALL_IMAGE_SIDE = 32  # images with a shorter side are warned about: upsampled, their features carry little
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


def image_name(source: ImageInput) -> str:
    """A short human name for error messages: the path for files, else e.g. 'PIL image', 'tensor (3, 20, 30)'."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        return f"PIL image {filename}" if filename else "PIL image"
    if isinstance(source, torch.Tensor):
        return f"tensor {tuple(source.shape)}"
    if isinstance(source, np.ndarray):
        return f"numpy array {source.shape}"
    return type(source).__name__


def load_image(source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Load an image as a (3, H, W) float32 RGB tensor in [0, 1] (contiguous, on CPU).

    Args:
        source: a path to an image file; a PIL image (any mode); a tensor (3, H, W), (1, H, W) or
            (H, W), uint8 or float in [0, 1]; or a numpy array (H, W), (H, W, 3) or (H, W, 4)
            (HWC), uint8, uint16 or float in [0, 1]. 4-channel arrays are RGBA, composited over white.
        max_pixels: refuse files and PIL images with more pixels than this, before decoding them.
    Returns:
        (3, H, W) float32 tensor. Tensor inputs keep their autograd graph and may share memory.
    Raises:
        InputError: the source is missing, not an image, corrupt, too large, empty or malformed.
    """
    name = image_name(source)
    if isinstance(source, (str, os.PathLike)):
        pixels = _load_file(Path(os.fsdecode(source)), name, max_pixels)
    elif isinstance(source, Image.Image):
        pixels = _from_pil(source, name, max_pixels)
    elif isinstance(source, torch.Tensor):
        pixels = _from_tensor(source, name)
    elif isinstance(source, np.ndarray):
        pixels = _from_array(source, name)
    else:
        raise InputError(f"cannot load an image from {name}; expected a path, PIL image, tensor or numpy array")
    if pixels.shape[1] == 0 or pixels.shape[2] == 0:
        raise InputError(f"{name}: image is empty ({pixels.shape[2]}x{pixels.shape[1]} pixels)")
    return pixels.contiguous()


PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}


def pil_canvas(image: torch.Tensor, geometry: ImageGeometry, resample: str, pad_value: float = 0.0) -> torch.Tensor:
    """Resize a (3, H, W) image in [0, 1] onto its (3, H_in, W_in) input canvas as the authors'
    scripts do with Pillow: 8-bit RGB, ``Image.resize`` with ``resample`` (``bilinear``, as
    torchvision's ``Resize`` on PIL images, or ``lanczos``), padding filled with ``pad_value``."""
    content_h, content_w = geometry.content_size
    array = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    resized = Image.fromarray(array).resize((content_w, content_h), PIL_FILTERS[resample])
    content = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float() / 255
    in_h, in_w = geometry.input_size
    if (content_h, content_w) == (in_h, in_w):
        return content
    canvas = torch.full((3, in_h, in_w), float(pad_value))
    top, left = int(geometry.offset[1]), int(geometry.offset[0])
    canvas[:, top : top + content_h, left : left + content_w] = content
    return canvas


def check_points(points: Any, image_size: tuple[int, int], *, image: str = "image") -> torch.Tensor:
    """Validate (x, y) pixel coordinates against an image of size (H, W).

    Args:
        points: (N, 2) array-like (list, numpy array, tensor) of (x, y) continuous pixel coordinates.
        image_size: (H, W) of the image; it covers [0, W] x [0, H], so x == W is on the edge.
        image: how to call the image in error messages, e.g. "image B" or a file name.
    Returns:
        (N, 2) float32 tensor.
    """
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    if _holds_bool(points):
        raise InputError("points must be (N, 2) pairs of numbers x, y; got true/false values")
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        got = f"{type(points).__name__} ({_one_line(exc)})"
        raise InputError(f"points must be (N, 2) pairs of x, y; got {got}") from exc
    if array.shape == (0,):
        raise InputError("no points given (an empty list); give (x, y) pairs")
    if array.ndim != 2 or array.shape[1] != 2:
        raise InputError(f"points must be (N, 2) pairs of x, y; got shape {array.shape}")
    height, width = image_size
    for index, (x, y) in enumerate(array):
        where = f"point {index} (x={float(x)}, y={float(y)})"
        if not (np.isfinite(x) and np.isfinite(y)):
            raise InputError(f"{where} is not a finite number")
        if not (0 <= x <= width and 0 <= y <= height):
            raise InputError(f"{where} lies outside {image} ({width}x{height} pixels)")
    return torch.from_numpy(array.astype(np.float32))


class SmallImageWarning(UserWarning):
    """An image is so small that resizing it onto a model's input canvas invents most of its pixels."""


def warn_if_small(pixels: torch.Tensor, source: ImageInput, input_size: int) -> None:
    """Warn when a (3, H, W) image's shorter side is below :data:`SMALL_IMAGE_SIDE` pixels (or a
    quarter of the input canvas, for tiny canvases)."""
    height, width = pixels.shape[-2:]
    if min(height, width) < min(SMALL_IMAGE_SIDE, input_size / 4):
        warnings.warn(
            f"{image_name(source)} is only {width}x{height} pixels; upsampled to the {input_size}x"
            f"{input_size} input its features carry little meaning",
            SmallImageWarning,
            stacklevel=3,
        )


@dataclass(frozen=True)
class ImageItem:
    """One image of a collection: its key (the name caches and outputs use), its file, its category,
    and whether it is taken mirrored left to right (pose alignment's mirrored sources)."""

    key: str
    path: Path
    category: str | None = None
    mirrored: bool = False

    def load(self) -> torch.Tensor:
        """The image as :func:`load_image` gives it, mirrored if asked: (3, H, W) float32 in [0, 1]."""
        pixels = load_image(self.path)
        return pixels.flip(-1) if self.mirrored else pixels


def list_images(source: str | os.PathLike, *, category_from_folder: bool = False) -> list[ImageItem]:
    """The images under a folder (recursively; keys are paths relative to it, with ``/``), or those
    listed in a text file (one path per line, relative to the file's folder; keys as written;
    ``#`` starts a comment line).

    ``category_from_folder`` takes each image's parent folder name as its category (for prompts).
    """
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        entries = [(p.relative_to(source).as_posix(), p) for p in paths]
    elif source.is_file():
        try:
            lines = [line.strip() for line in source.read_text().splitlines()]
        except UnicodeDecodeError:
            raise InputError(f"{source}: expected a folder of images or a text file listing them") from None
        entries = [(line, source.parent / line) for line in lines if line and not line.startswith("#")]
    else:
        raise InputError(f"{source}: no such folder or list file")
    if not entries:
        raise InputError(f"{source}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    keys = [key for key, _ in entries]
    if len(set(keys)) != len(keys):
        raise InputError(f"{source}: lists an image more than once")
    return [ImageItem(key, path, path.parent.name if category_from_folder else None) for key, path in entries]


def _holds_bool(value: Any) -> bool:
    """Whether a (nested) list or array of points holds booleans (never meant as coordinates)."""
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype == bool
    if isinstance(value, (list, tuple)):
        return any(_holds_bool(item) for item in value)
    return False


# --- files and PIL images -------------------------------------------------------------------


def _load_file(path: Path, name: str, max_pixels: int) -> torch.Tensor:
    """Open, size-check, fully decode and convert one image file."""
    if path.is_dir():
        raise InputError(f"{name}: is a directory, not an image file")
    if not path.exists():
        raise InputError(f"{name}: not found")
    try:
        # Our own max_pixels check below supersedes Pillow's warning; its hard error is caught.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise InputError(_pillow_bomb_message(name, exc, max_pixels)) from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{name}: not an image file (Pillow cannot identify it)") from exc
    except PermissionError as exc:
        raise InputError(f"{name}: permission denied") from exc
    except OSError as exc:
        raise InputError(f"{name}: cannot be read ({_one_line(exc)})") from exc
    with image:
        return _from_pil(image, name, max_pixels)


def _from_pil(image: Image.Image, name: str, max_pixels: int) -> torch.Tensor:
    """Size-check (before decoding), decode, apply EXIF orientation and convert to RGB."""
    _check_size(image.size, name, max_pixels)
    with _decoding(name, max_pixels):
        image.load()
        image = ImageOps.exif_transpose(image)
    return _finish(_pil_to_hwc(image, name))


def _check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    """Refuse a (W, H) size over max_pixels."""
    width, height = size
    if width * height > max_pixels:
        raise InputError(_too_large(name, f"{width}x{height} pixels", width * height, max_pixels))


def _too_large(name: str, what: str, pixels: int, max_pixels: int) -> str:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    also = "" if pillow_limit is None or pixels <= 2 * pillow_limit else " (and raise PIL.Image.MAX_IMAGE_PIXELS)"
    return (
        f"{name}: {what} ({pixels / 1e6:.1f} Mpx) exceeds the limit of {max_pixels / 1e6:.1f} Mpx; "
        f"pass max_pixels={pixels}{also} if you trust this file"
    )


def _pillow_bomb_message(name: str, exc: Exception, max_pixels: int) -> str:
    """Pillow's own decompression-bomb refusal, phrased like ours."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found.group(1)) if found else None
    if pixels is not None and pixels > max_pixels:
        return _too_large(name, f"{pixels} pixels", pixels, max_pixels)
    return (
        f"{name}: refused by Pillow as a possible decompression bomb ({_one_line(exc)}); "
        "raise PIL.Image.MAX_IMAGE_PIXELS if you trust this file"
    )


@contextlib.contextmanager
def _decoding(name: str, max_pixels: int) -> Iterator[None]:
    """Turn Pillow's decoding failures (and bomb warnings, as errors) into InputError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputError(_pillow_bomb_message(name, exc, max_pixels)) from exc
        except _DECODE_ERRORS as exc:
            raise InputError(f"{name}: corrupt or truncated image data ({_one_line(exc)})") from exc


def _pil_to_hwc(image: Image.Image, name: str) -> np.ndarray:
    """(H, W, C) float32 in [0, 1], C = 1, 3 or 4, from a decoded PIL image of any mode."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        return _scale_grey(np.asarray(image), name)[..., None]
    has_alpha = mode in _ALPHA_MODES or "transparency" in image.info
    try:
        converted = image.convert("RGBA" if has_alpha else "RGB")
    except ValueError as exc:
        raise InputError(f"{name}: unsupported image mode {mode!r} ({_one_line(exc)})") from exc
    return np.asarray(converted, dtype=np.float32) / 255.0


def _scale_grey(array: np.ndarray, name: str) -> np.ndarray:
    """(H, W) float32 in [0, 1] from 16/32-bit integer or float grey values."""
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise InputError(f"{name}: float image contains non-finite values")
        return np.clip(array, 0.0, 1.0).astype(np.float32)
    if array.dtype.kind == "u":  # I;16, I;16B, I;16L, I;16N
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    top = 65535.0 if array.size == 0 or (array.min() >= 0 and array.max() <= 65535) else float(2**31 - 1)
    return (np.clip(array, 0, None).astype(np.float64) / top).astype(np.float32)


# --- tensors and numpy arrays ---------------------------------------------------------------


def _from_tensor(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """(3, H, W), (1, H, W) or (H, W) uint8 / float tensor -> (3, H, W) float32 on CPU."""
    if not (tensor.ndim == 2 or (tensor.ndim == 3 and tensor.shape[0] in (1, 3))):
        raise InputError(f"{name}: expected a tensor of shape (3, H, W), (1, H, W) or (H, W)")
    if tensor.dtype == torch.uint8:
        pixels = tensor.cpu().float() / 255.0
    elif tensor.is_floating_point():
        pixels = tensor.cpu().float()
        _check_unit_range(pixels.detach().numpy(), name)
        pixels = pixels.clamp(0.0, 1.0)
    else:
        raise InputError(f"{name}: dtype {tensor.dtype} not supported; use uint8 or float in [0, 1]")
    pixels = pixels if pixels.ndim == 3 else pixels[None]
    return pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels


def _from_array(array: np.ndarray, name: str) -> torch.Tensor:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 / uint16 / float array -> (3, H, W) float32."""
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
        raise InputError(
            f"{name}: expected (H, W), (H, W, 3) or (H, W, 4) in HWC order (pass channel-first data as a torch tensor)"
        )
    if array.dtype in (np.uint8, np.uint16):
        hwc = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    elif array.dtype.kind == "f":
        hwc = array.astype(np.float32)
        _check_unit_range(hwc, name)
        hwc = np.clip(hwc, 0.0, 1.0)
    else:
        raise InputError(f"{name}: dtype {array.dtype} not supported; use uint8, uint16 or float in [0, 1]")
    return _finish(hwc if hwc.ndim == 3 else hwc[..., None])


# Float pixels this close outside [0, 1] (resampling round-off) are clipped rather than refused.
UNIT_RANGE_TOLERANCE = 1e-3


def _check_unit_range(values: np.ndarray, name: str) -> None:
    """Refuse float pixel values that are non-finite or outside [0, 1] by more than the tolerance."""
    if values.size == 0:
        return
    if not np.isfinite(values).all():
        raise InputError(f"{name}: pixel values must be finite; found NaN or inf")
    low, high = float(values.min()), float(values.max())
    if low < -UNIT_RANGE_TOLERANCE or high > 1.0 + UNIT_RANGE_TOLERANCE:
        raise InputError(
            f"{name}: float pixel values must lie in [0, 1]; found [{low:g}, {high:g}] (use uint8 for 0..255 data)"
        )


def _finish(hwc: np.ndarray) -> torch.Tensor:
    """(H, W, C) float32 in [0, 1], C = 1, 3 or 4 -> (3, H, W) float32; alpha composited over white."""
    if hwc.shape[2] == 4:
        alpha = hwc[..., 3:]
        hwc = hwc[..., :3] * alpha + (1.0 - alpha)
    elif hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(hwc, dtype=np.float32)).permute(2, 0, 1)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
