"""Pixel-level refinement of a coarse feature-grid mask with the image's colours.

Dense features decide foreground per cell of 14 or so input pixels, and each cell sees a
neighbourhood (a descriptor's support, a patch): near an object's outline a coarse mask is off
by up to about a cell. Zero-shot segmentation methods commonly refine such masks at pixel level
(a CRF or a bilateral solver); this is a small, deterministic step of that kind:

1. a band of ``radius`` pixels on both sides of the coarse boundary is marked uncertain;
2. colour histograms (16 levels per RGB channel, add-one smoothed) of the confident foreground
   and background outside the band give a per-pixel log-likelihood ratio, box-filtered over
   ``smooth`` pixels;
3. inside the band a pixel is foreground where that ratio is positive; outside it the coarse
   mask stands.

It moves boundaries onto colour edges and never changes anything farther than ``radius`` from
the coarse boundary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LEVELS = 16  # quantisation levels per colour channel


def _dilate(mask: Tensor, radius: int) -> Tensor:
    """(H, W) bool dilated by a (2r+1)^2 square."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask[None, None].float(), 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0


def colour_log_ratio(image: Tensor, foreground: Tensor, background: Tensor) -> Tensor:
    """log P(colour | foreground) - log P(colour | background) per pixel.

    Args:
        image: (3, H, W) in [0, 1].
        foreground: (H, W) bool samples of the foreground.
        background: (H, W) bool samples of the background.
    Returns:
        (H, W) float log-likelihood ratios.
    """
    quantised = (image.clamp(0, 1) * (LEVELS - 1)).round().long()
    index = (quantised[0] * LEVELS + quantised[1]) * LEVELS + quantised[2]  # (H, W)
    bins = LEVELS**3

    def log_probability(samples: Tensor) -> Tensor:
        counts = torch.bincount(index[samples], minlength=bins).float() + 1.0
        return torch.log(counts / counts.sum())

    return log_probability(foreground)[index] - log_probability(background)[index]


def refine_mask(image: Tensor, coarse: Tensor, radius: int, smooth: int = 5) -> Tensor:
    """Move a coarse mask's boundary onto colour edges within ``radius`` pixels of it.

    Args:
        image: (3, H, W) in [0, 1].
        coarse: (H, W) bool coarse foreground.
        radius: half-width in pixels of the uncertain band around the coarse boundary.
        smooth: side of the box filter applied to the colour log-likelihood ratio (odd).
    Returns:
        (H, W) bool refined mask.
    """
    if radius <= 0 or coarse.all() or not coarse.any():
        return coarse
    band = _dilate(coarse, radius) & _dilate(~coarse, radius)
    foreground, background = coarse & ~band, ~coarse & ~band
    if not foreground.any() or not background.any():
        return coarse
    ratio = colour_log_ratio(image.to(coarse.device), foreground, background)
    if smooth > 1:
        ratio = F.avg_pool2d(ratio[None, None], smooth, stride=1, padding=smooth // 2, count_include_pad=False)[0, 0]
    return torch.where(band, ratio > 0, coarse)
