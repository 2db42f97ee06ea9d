"""The matchers of the authors' protocols (:mod:`.protocols`), each as its authors' code computes it,
in its frame: MARCO's kernel soft-argmax; the zeroed-window soft-argmax on cells of DIY-SC and of
the DistillDIFT authors' ``eval/``; the argmax at image resolution of GECO and of the DistillDIFT
authors' ``train/eval.py``. Predictions come back in original target-image pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from .._moved import renamed_names
from ..data.pairs import Pair
from ..features.base import FeatureMap
from ..matching.kernels import kernel_soft_argmax, sample_descriptors, zeroed_window_soft_argmax
from .cache import FeatureCache
from .frames import Frame
from .protocols import Protocol, pair_frames

T = TypeVar("T")
NORM_CHUNK = 64  # channels upsampled at a time for the per-pixel norms at image resolution
DISTILLDIFT_EPS = 1e-10  # eval/eval.py normalize_feats


def _needed(value: T | None, what: str, protocol: Protocol) -> T:
    """A setting the matcher needs (every protocol that uses the matcher sets it)."""
    if value is None:
        raise ValueError(f"protocol {protocol.name} has no {what}")
    return value


def _descriptors(fmap: FeatureMap, protocol: Protocol) -> Tensor:
    """(C, h, w) features of one image: raw for ``dot`` similarity, L2-normalised for ``cosine``."""
    return fmap.raw_features()[0] if protocol.similarity == "dot" else fmap.features[0]


def _wrapped(index: np.ndarray, size: int, pair: Pair, notes: list[str] | None) -> np.ndarray:
    """``index`` taken modulo ``size`` as Python's (and torch's) indexing does for ``-size <= index < 0``;
    an index the authors' indexing refuses (``>= size`` or ``< -size``: an IndexError there) is
    wrapped on, and noted."""
    stopped = (index >= size) | (index < -size)
    if notes is not None and stopped.any():
        notes.extend(f"pair {pair.id}, counted keypoint {row}" for row in np.flatnonzero(stopped))
    return np.mod(index, size)


def match_marco(
    protocol: Protocol,
    source: FeatureMap,
    target: FeatureMap,
    points: np.ndarray,
    frames: tuple[Frame, Frame],
    pair: Pair,
    notes: list[str] | None = None,
) -> np.ndarray:
    """MARCO: (N, 2) source pixels -> (N, 2) target pixels (see :mod:`.protocols`)."""
    features_s, features_t = _descriptors(source, protocol), _descriptors(target, protocol)
    (canvas_h, canvas_w), (height, width) = source.geometries[0].input_size, features_s.shape[-2:]
    kps = torch.from_numpy(frames[0].to_frame(points, annotated=True)).to(features_s.device)
    on_map = torch.stack((kps[:, 0] * width / canvas_w, kps[:, 1] * height / canvas_h), dim=-1)
    grid = torch.stack((on_map[:, 0] / (width - 1) * 2 - 1, on_map[:, 1] / (height - 1) * 2 - 1), dim=-1)
    sampled = F.grid_sample(
        features_s[None], grid[None, :, None], mode="bilinear", padding_mode="border", align_corners=True
    )[0, :, :, 0].T  # (N, C)
    similarity = (sampled @ features_t.flatten(1)).view(1, len(points), *features_t.shape[-2:])
    cells, _ = kernel_soft_argmax(
        similarity, _needed(protocol.sigma, "sigma", protocol), _needed(protocol.temperature, "temperature", protocol)
    )
    target_h, target_w = target.geometries[0].input_size
    found = cells[0] * cells.new_tensor(((target_w - 1) / (width - 1), (target_h - 1) / (height - 1)))
    return frames[1].from_frame(found.cpu().numpy())


def _cell_grid(fmap: FeatureMap, protocol: Protocol) -> Tensor:
    """(C, g, g) L2-normalised features the cells are taken from: the native grid, or (``grid``
    ``60``, the DistillDIFT authors' eval/) the raw features upsampled bilinearly to 60 x 60 and
    normalised per cell with eps 1e-10."""
    if protocol.grid == "native":
        return fmap.features[0]
    side = int(protocol.grid)
    raw = F.interpolate(fmap.raw_features(), size=(side, side), mode="bilinear", align_corners=False)[0]
    return raw / (raw.norm(dim=0, keepdim=True) + DISTILLDIFT_EPS)


def match_cells(
    protocol: Protocol,
    source: FeatureMap,
    target: FeatureMap,
    points: np.ndarray,
    frames: tuple[Frame, Frame],
    pair: Pair,
    notes: list[str] | None = None,
) -> np.ndarray:
    """DIY-SC and the DistillDIFT authors' eval/: (N, 2) source pixels -> (N, 2) target pixels.

    The source descriptor is the cell ``int32(float32(g / side) * x')`` of the keypoint ``x'`` in the
    frame (C truncation toward zero), at the flat index ``g * cy + cx`` wrapped as the authors'
    indexing wraps it; the zeroed-window soft-argmax's expected cell ``c`` is put at
    ``c * stride + stride // 2`` (``stride = side / g``) in the target's frame.
    """
    grid_s, grid_t = _cell_grid(source, protocol), _cell_grid(target, protocol)
    height, width = grid_s.shape[-2:]
    side, target_side = _needed(frames[0].side, "frame side", protocol), _needed(frames[1].side, "frame side", protocol)
    kps = frames[0].to_frame(points, annotated=True)
    cells_x = (np.float32(width / side) * kps[:, 0]).astype(np.int32).astype(np.int64)
    cells_y = (np.float32(height / side) * kps[:, 1]).astype(np.int32).astype(np.int64)
    flat = _wrapped(width * cells_y + cells_x, height * width, pair, notes)
    descriptors = grid_s.flatten(1)[:, torch.from_numpy(flat).to(grid_s.device)].T  # (N, C)
    similarity = (descriptors @ grid_t.flatten(1)).view(1, len(points), height, width)
    cells, _ = zeroed_window_soft_argmax(
        similarity,
        _needed(protocol.window, "window", protocol) // 2,
        _needed(protocol.temperature, "temperature", protocol),
    )
    stride: np.ndarray = np.array([target_side / width, target_side / height])
    return frames[1].from_frame(cells[0].cpu().numpy() * stride + stride // 2)


def _upsampled_norms(features: Tensor, size: tuple[int, int]) -> Tensor:
    """(H, W) L2 norms of (C, h, w) ``features`` bilinearly upsampled to ``size``, without holding
    all C upsampled channels at once."""
    squares = features.new_zeros(size)
    for start in range(0, features.shape[0], NORM_CHUNK):
        chunk = F.interpolate(
            features[None, start : start + NORM_CHUNK], size=size, mode="bilinear", align_corners=False
        )
        squares += chunk[0].square().sum(dim=0)
    return squares.sqrt()


def source_pixels(
    protocol: Protocol, points: np.ndarray, size: tuple[int, int], pair: Pair, notes: list[str] | None = None
) -> np.ndarray:
    """(N, 2) integer source pixels (x, y) whose descriptor is taken: GECO's ``floor`` (negative
    indices wrap per axis, as indexing a tensor does), or the DistillDIFT authors' train/eval.py
    ``round`` of the point (float16 first) clamped to ``[0, W - 1] x [0, H - 1]``."""
    height, width = size
    points = np.asarray(points, np.float32)
    if protocol.lookup == "pixel round":
        if protocol.precision == "float16":
            points = points.astype(np.float16).astype(np.float32)
        return np.stack(
            (np.round(np.clip(points[:, 0], 0, width - 1)), np.round(np.clip(points[:, 1], 0, height - 1))), axis=1
        ).astype(np.int64)
    pixels = np.floor(points).astype(np.int64)
    return np.stack((_wrapped(pixels[:, 0], width, pair, notes), _wrapped(pixels[:, 1], height, pair, notes)), axis=1)


def match_pixels(
    protocol: Protocol,
    source: FeatureMap,
    target: FeatureMap,
    points: np.ndarray,
    frames: tuple[Frame, Frame],
    pair: Pair,
    notes: list[str] | None = None,
) -> np.ndarray:
    """GECO and the DistillDIFT authors' train/eval.py: (N, 2) source pixels -> (N, 2) target pixel
    indices (see :mod:`.protocols`).

    Both raw maps are upsampled to their image's size; the cosine of the source pixel's descriptor
    with every upsampled target pixel is ``up(<d, t>) / |up(t)|`` (bilinear upsampling is linear),
    so only the target's per-pixel norms need the full resolution.
    """
    raw_s, raw_t = source.raw_features()[0], target.raw_features()[0]
    (source_h, source_w), (target_h, target_w) = pair.source_size, pair.target_size
    pixels = source_pixels(protocol, points, pair.source_size, pair, notes)
    height, width = raw_s.shape[-2:]
    scale = raw_s.new_tensor((width / source_w, height / source_h))
    on_grid = (torch.from_numpy(pixels).to(raw_s) + 0.5) * scale - 0.5
    descriptors = sample_descriptors(raw_s[None], on_grid[None])[0]  # (N, C), L2-normalised
    low = (descriptors @ raw_t.flatten(1)).view(1, len(points), *raw_t.shape[-2:])
    numerator = F.interpolate(low, size=(target_h, target_w), mode="bilinear", align_corners=False)[0]
    cosine = numerator / _upsampled_norms(raw_t, (target_h, target_w)).clamp_min(1e-12)
    index = cosine.flatten(1).argmax(dim=1)
    return torch.stack((index % target_w, index // target_w), dim=-1).cpu().numpy().astype(np.float64)


MATCHERS: dict[str, Callable[..., np.ndarray]] = {
    "kernel_soft_argmax": match_marco,
    "zeroed_window_soft_argmax": match_cells,
    "image_argmax": match_pixels,
}


def predict_with(
    protocol: Protocol, store: FeatureCache, pairs: Sequence[Pair], batch_size: int = 8, progress: bool = True
) -> list[np.ndarray]:
    """Each pair's counted source keypoints found in its target image by ``protocol``'s matcher.

    A source keypoint where the authors' code would stop with an IndexError (far outside its image)
    is wrapped on, with one warning.

    Returns:
        one (M_i, 2) float64 array of predicted target points (x, y) per pair, original pixels.
    """
    matcher = MATCHERS[protocol.matcher]
    canvas = store.extractor.config.input_size
    found: list[np.ndarray] = []
    notes: list[str] = []
    with tqdm(total=len(pairs), desc="matching", unit="pair", disable=not progress) as bar, torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            sources = store.feature_map([pair.source_image for pair in chunk])
            targets = store.feature_map([pair.target_image for pair in chunk])
            for i, pair in enumerate(chunk):
                points = pair.counted_points()[0]
                found.append(
                    matcher(protocol, sources[i], targets[i], points, pair_frames(protocol, pair, canvas), pair, notes)
                    if len(points)
                    else np.zeros((0, 2))
                )
            bar.update(len(chunk))
    if notes:
        warnings.warn(
            f"{len(notes)} source keypoint(s) lie so far outside their image that the {protocol.name} "
            f"authors' code stops with an IndexError there; semcorr wraps their index on (e.g. {notes[0]})",
            stacklevel=2,
        )
    return found


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
