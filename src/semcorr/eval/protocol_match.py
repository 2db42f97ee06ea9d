"""The matchers of the authors' protocols (:mod:`.protocols`): MARCO's kernel soft-argmax, DIY-SC's
zeroed-window soft-argmax and GECO's argmax at image resolution, each as its authors' code computes
it, in its frame. Predictions come back in original target-image pixels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ..data.pairs import Pair
from ..features.base import FeatureMap
from ..matching.kernels import kernel_soft_argmax, sample_descriptors, zeroed_window_soft_argmax
from .cache import FeatureCache
from .protocols import Frame, Protocol, pair_frames

NORM_CHUNK = 64  # channels upsampled at a time for GECO's per-pixel norms


def _descriptors(fmap: FeatureMap, protocol: Protocol) -> Tensor:
    """(C, h, w) features of one image: raw for ``dot`` similarity, L2-normalised for ``cosine``."""
    return fmap.raw_features()[0] if protocol.similarity == "dot" else fmap.features[0]


def match_marco(protocol: Protocol, source: FeatureMap, target: FeatureMap, points: np.ndarray,
                frames: tuple[Frame, Frame], pair: Pair) -> np.ndarray:
    """MARCO: (N, 2) source pixels -> (N, 2) target pixels (see :mod:`.protocols`)."""
    features_s, features_t = _descriptors(source, protocol), _descriptors(target, protocol)
    (canvas_h, canvas_w), (height, width) = source.geometries[0].input_size, features_s.shape[-2:]
    kps = torch.from_numpy(frames[0].to_frame(points, annotated=True)).to(features_s.device)
    on_map = torch.stack((kps[:, 0] * width / canvas_w, kps[:, 1] * height / canvas_h), dim=-1)
    grid = torch.stack((on_map[:, 0] / (width - 1) * 2 - 1, on_map[:, 1] / (height - 1) * 2 - 1), dim=-1)
    sampled = F.grid_sample(features_s[None], grid[None, :, None], mode="bilinear", padding_mode="border",
                            align_corners=True)[0, :, :, 0].T  # (N, C)
    similarity = (sampled @ features_t.flatten(1)).view(1, len(points), *features_t.shape[-2:])
    assert protocol.sigma is not None and protocol.temperature is not None  # MARCO's protocol sets both
    cells, _ = kernel_soft_argmax(similarity, protocol.sigma, protocol.temperature)
    target_h, target_w = target.geometries[0].input_size
    found = cells[0] * cells.new_tensor(((target_w - 1) / (width - 1), (target_h - 1) / (height - 1)))
    return frames[1].from_frame(found.cpu().numpy())


def match_diysc(protocol: Protocol, source: FeatureMap, target: FeatureMap, points: np.ndarray,
                frames: tuple[Frame, Frame], pair: Pair) -> np.ndarray:
    """DIY-SC: (N, 2) source pixels -> (N, 2) target pixels (see :mod:`.protocols`)."""
    features_s, features_t = _descriptors(source, protocol), _descriptors(target, protocol)
    height, width = features_s.shape[-2:]
    canvas_h, canvas_w = source.geometries[0].input_size
    kps = frames[0].to_frame(points, annotated=True)
    cells_x = np.clip((np.float32(width / canvas_w) * kps[:, 0]).astype(np.int32), 0, width - 1)
    cells_y = np.clip((np.float32(height / canvas_h) * kps[:, 1]).astype(np.int32), 0, height - 1)
    descriptors = features_s[:, torch.from_numpy(cells_y).long(), torch.from_numpy(cells_x).long()].T  # (N, C)
    similarity = (descriptors @ features_t.flatten(1)).view(1, len(points), height, width)
    assert protocol.window is not None and protocol.temperature is not None  # DIY-SC's protocol sets both
    cells, _ = zeroed_window_soft_argmax(similarity, protocol.window // 2, protocol.temperature)
    target_h, target_w = target.geometries[0].input_size
    stride = np.array((target_w / width, target_h / height))
    return frames[1].from_frame(cells[0].cpu().numpy() * stride + stride // 2)


def _upsampled_norms(features: Tensor, size: tuple[int, int]) -> Tensor:
    """(H, W) L2 norms of (C, h, w) ``features`` bilinearly upsampled to ``size``, without holding
    all C upsampled channels at once."""
    squares = features.new_zeros(size)
    for start in range(0, features.shape[0], NORM_CHUNK):
        chunk = F.interpolate(features[None, start:start + NORM_CHUNK], size=size, mode="bilinear", align_corners=False)
        squares += chunk[0].square().sum(dim=0)
    return squares.sqrt()


def match_geco(protocol: Protocol, source: FeatureMap, target: FeatureMap, points: np.ndarray,
               frames: tuple[Frame, Frame], pair: Pair) -> np.ndarray:
    """GECO: (N, 2) source pixels -> (N, 2) target pixels (pixel indices; see :mod:`.protocols`).

    Both raw maps are upsampled to their image's size; the cosine of the source pixel's descriptor
    with every upsampled target pixel is ``up(<d, t>) / |up(t)|`` (bilinear upsampling is linear),
    so only the target's per-pixel norms need the full resolution.
    """
    raw_s, raw_t = source.raw_features()[0], target.raw_features()[0]
    (source_h, source_w), (target_h, target_w) = pair.source_size, pair.target_size
    pixels = np.floor(np.asarray(points, np.float32))
    pixels = np.clip(pixels, 0, (source_w - 1, source_h - 1))
    height, width = raw_s.shape[-2:]
    on_grid = (torch.from_numpy(pixels).to(raw_s) + 0.5) * raw_s.new_tensor((width / source_w, height / source_h)) - 0.5
    descriptors = sample_descriptors(raw_s[None], on_grid[None])[0]  # (N, C), L2-normalised
    low = (descriptors @ raw_t.flatten(1)).view(1, len(points), *raw_t.shape[-2:])
    numerator = F.interpolate(low, size=(target_h, target_w), mode="bilinear", align_corners=False)[0]
    cosine = numerator / _upsampled_norms(raw_t, (target_h, target_w)).clamp_min(1e-12)
    index = cosine.flatten(1).argmax(dim=1)
    return torch.stack((index % target_w, index // target_w), dim=-1).cpu().numpy().astype(np.float64)


MATCHERS: dict[str, Callable[..., np.ndarray]] = {
    "kernel_soft_argmax": match_marco, "zeroed_window_soft_argmax": match_diysc, "image_argmax": match_geco,
}


def predict_with(protocol: Protocol, store: FeatureCache, pairs: Sequence[Pair], batch_size: int = 8,
                 progress: bool = True) -> list[np.ndarray]:
    """Each pair's counted source keypoints found in its target image by ``protocol``'s matcher.

    Returns:
        one (M_i, 2) float64 array of predicted target points (x, y) per pair, original pixels.
    """
    matcher = MATCHERS[protocol.matcher]
    canvas = store.extractor.config.input_size
    found: list[np.ndarray] = []
    with tqdm(total=len(pairs), desc="matching", unit="pair", disable=not progress) as bar, torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            sources = store.feature_map([pair.source_image for pair in chunk])
            targets = store.feature_map([pair.target_image for pair in chunk])
            for i, pair in enumerate(chunk):
                points = pair.counted_points()[0]
                found.append(matcher(protocol, sources[i], targets[i], points, pair_frames(protocol, pair, canvas), pair)
                             if len(points) else np.zeros((0, 2)))
            bar.update(len(chunk))
    return found
