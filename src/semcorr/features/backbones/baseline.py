"""A weight-free baseline: dense SIFT-like gradient-orientation histograms.

Runs offline with no downloads, so the whole pipeline can be exercised and benchmark tables get
a classical reference row. Pure torch (separable convolutions and one ``grid_sample``), batched.
Grayscale only: appending pooled opponent-colour channels lowered PCK on warped PF-WILLOW images
at every weight tried, so there are none.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..base import Extractor
from ..config import BaselineConfig

_LUMA = (0.299, 0.587, 0.114)


def _gaussian(sigma: float) -> Tensor:
    """(2r+1,) normalised Gaussian taps, r = ceil(3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    return kernel / kernel.sum()


def _triangle(half_width: int) -> Tensor:
    """(2n-1,) normalised taps of max(0, 1 - |d| / n): SIFT's bilinear spatial-bin weight."""
    taps = torch.arange(-(half_width - 1), half_width, dtype=torch.float32)
    kernel = 1.0 - taps.abs() / half_width
    return kernel / kernel.sum()


def _separable(x: Tensor, kernel: Tensor, padding_mode: str) -> Tensor:
    """Depthwise separable filtering of (B, C, H, W) by a 1-D kernel along both axes."""
    channels, radius = x.shape[1], kernel.numel() // 2
    k = kernel.to(x)
    x = F.pad(x, (radius, radius, radius, radius), mode=padding_mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


class DenseSiftExtractor(Extractor):
    """Dense SIFT-like descriptors, one per feature cell, centred exactly on the cell centre.

    Pipeline for a (B, 3, S, S) canvas: grayscale -> Gaussian blur -> central-difference
    gradients -> magnitude-weighted, linearly soft-binned orientation maps (B, O, S, S) ->
    triangle filter of half-width ``cell_size`` (SIFT's bilinear spatial weighting) -> sampled at
    the ``spatial_bins**2`` bin centres around each cell centre -> Gaussian window over bins ->
    concatenated (B, spatial_bins**2 * O, h, w) -> L2 normalise, clip, renormalise.
    """

    config: BaselineConfig

    def __init__(
        self, config: BaselineConfig = BaselineConfig(), *, random_weights: bool = False, name: str | None = None
    ) -> None:
        """``random_weights`` changes nothing (there are no weights); ``name`` defaults to ``baseline``."""
        super().__init__()
        self.name = name or "baseline"
        self.config = config
        self.stride = config.stride
        self.random_weights = False

    def orientation_maps(self, pixels: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, O, S, S) magnitude-weighted soft orientation histograms."""
        cfg = self.config
        gray = (pixels * pixels.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if cfg.smoothing > 0:
            gray = _separable(gray, _gaussian(cfg.smoothing), "replicate")
        padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
        gx = 0.5 * (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
        gy = 0.5 * (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
        magnitude = torch.sqrt(gx * gx + gy * gy)
        position = torch.atan2(gy, gx) * (cfg.orientation_bins / (2 * math.pi))  # in bin units
        centres = torch.arange(cfg.orientation_bins, dtype=pixels.dtype, device=pixels.device)
        offset = (
            torch.remainder(position - centres.view(1, -1, 1, 1) + cfg.orientation_bins / 2, cfg.orientation_bins)
            - cfg.orientation_bins / 2
        )  # wrapped to [-O/2, O/2)
        return magnitude * (1.0 - offset.abs()).clamp_(min=0.0)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, spatial_bins**2 * orientation_bins, h, w) descriptors.

        ``(h, w) = self.grid_size(S)``; cell (i, j) is centred at input pixel
        ``((j + 0.5) * S / w, (i + 0.5) * S / h)``, the convention of :mod:`semcorr.geometry`.
        """
        cfg = self.config
        with torch.autocast(pixels.device.type, enabled=False):
            pixels = pixels.float()
            batch, _, height, width = pixels.shape
            grid_h, grid_w = self.grid_size(height)
            if height != width or grid_h < 1:
                raise ValueError(f"expected a square canvas of at least {self.stride} px, got {height}x{width}")
            histograms = _separable(self.orientation_maps(pixels), _triangle(cfg.cell_size), "constant")

            nb = cfg.spatial_bins
            bin_offsets = (torch.arange(nb, dtype=torch.float32) - (nb - 1) / 2) * cfg.cell_size  # (nb,)
            xs = ((torch.arange(grid_w) + 0.5) * (width / grid_w))[None, :] + bin_offsets[:, None]  # (nb, w)
            ys = ((torch.arange(grid_h) + 0.5) * (height / grid_h))[None, :] + bin_offsets[:, None]  # (nb, h)
            grid = torch.stack(
                torch.meshgrid(2 * xs.flatten() / width - 1, 2 * ys.flatten() / height - 1, indexing="xy"), dim=-1
            )  # (nb*h, nb*w, 2), align_corners=False
            grid = grid.to(pixels.device).expand(batch, -1, -1, -1)
            sampled = F.grid_sample(histograms, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            orientations = cfg.orientation_bins
            sampled = sampled.view(batch, orientations, nb, grid_h, nb, grid_w)
            descriptors = sampled.permute(0, 2, 4, 1, 3, 5)  # (B, nb_y, nb_x, O, h, w)

            sigma = nb * cfg.cell_size / 2  # SIFT's window: half the descriptor width
            window = torch.exp(-(bin_offsets[:, None] ** 2 + bin_offsets[None, :] ** 2) / (2 * sigma**2))
            descriptors = descriptors * window.to(pixels.device).view(1, nb, nb, 1, 1, 1)
            descriptors = descriptors.reshape(batch, nb * nb * orientations, grid_h, grid_w)

            descriptors = descriptors + cfg.floor
            descriptors = F.normalize(descriptors, dim=1, eps=1e-12)
            descriptors = descriptors.clamp(max=cfg.clip)
            return F.normalize(descriptors, dim=1, eps=1e-12)
