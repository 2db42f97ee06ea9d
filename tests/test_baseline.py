"""Tests of the weight-free dense SIFT baseline (``semcorr.features.baseline``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semcorr.features.backbones.baseline import BaselineConfig, DenseSiftExtractor
from semcorr.features.base import FeatureMap
from semcorr.matching import sample_descriptors, similarity_maps, window_soft_argmax


def _texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(3, H, W) smooth random colour texture in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, height // 4 + 2, width // 4 + 2, generator=generator)
    return F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)


@pytest.fixture(scope="module")
def extractor() -> DenseSiftExtractor:
    return DenseSiftExtractor()


# --- 1. shapes, normalisation, batching -------------------------------------------------------


def test_contract(extractor: DenseSiftExtractor) -> None:
    assert extractor.name == "baseline"
    assert extractor.stride == extractor.config.stride == 14
    assert not extractor.random_weights
    assert sum(p.numel() for p in extractor.parameters()) == 0
    assert extractor.config.input_size == 434


def test_extract_shape_and_norm(extractor: DenseSiftExtractor) -> None:
    feature_map = extractor.extract(_texture(200, 300))
    assert isinstance(feature_map, FeatureMap)
    assert feature_map.features.shape == (1, 128, 31, 31)
    assert feature_map.model == "baseline" and not feature_map.random_weights
    assert torch.allclose(feature_map.features.norm(dim=1), torch.ones(1, 31, 31), atol=1e-5)
    assert (feature_map.features >= 0).all()


@pytest.mark.parametrize("size", [224, 100, 98, 30, 14])
def test_other_input_sizes(size: int) -> None:
    extractor = DenseSiftExtractor(BaselineConfig(input_size=size))
    feature_map = extractor.extract(_texture(120, 90))
    cells = size // 14
    assert feature_map.features.shape == (1, 128, cells, cells)
    assert feature_map.grid_size == extractor.grid_size()
    assert torch.isfinite(feature_map.features).all()
    assert torch.allclose(feature_map.features.norm(dim=1), torch.ones(1, cells, cells), atol=1e-5)


def test_flat_image_gives_finite_unit_descriptors(extractor: DenseSiftExtractor) -> None:
    features = extractor.extract(torch.full((3, 50, 50), 0.3)).features
    assert torch.allclose(features.norm(dim=1), torch.ones(1, 31, 31), atol=1e-5)


def test_batch_equals_singles(extractor: DenseSiftExtractor) -> None:
    first, second = _texture(200, 300, seed=1), _texture(310, 250, seed=2)
    batch = extractor.extract([first, second]).features
    assert batch.shape == (2, 128, 31, 31)
    assert torch.allclose(batch[0:1], extractor.extract(first).features, atol=1e-6)
    assert torch.allclose(batch[1:2], extractor.extract(second).features, atol=1e-6)


def test_rejects_non_square(extractor: DenseSiftExtractor) -> None:
    with pytest.raises(ValueError):
        extractor(torch.rand(1, 3, 56, 70))


# --- 2. geometry: equivariance and centring ---------------------------------------------------


def test_shift_by_stride_moves_descriptors_by_one_cell(extractor: DenseSiftExtractor) -> None:
    """Two 434 windows of one texture, offset by one stride in x and y: interior cells agree."""
    stride, big = extractor.stride, _texture(434 + 14, 434 + 14, seed=3)
    window = big[None, :, :434, :434]
    shifted = big[None, :, stride : stride + 434, stride : stride + 434]  # shifted(x) = window(x + stride)
    features, features_shifted = extractor(window), extractor(shifted)
    margin = 4  # cells: the descriptor reaches 2.5 * cell_size + blur ~ 44 px from its centre
    interior = slice(margin, 31 - margin)
    expected = features[..., 1:, 1:][..., interior, interior]
    assert torch.allclose(features_shifted[..., interior, interior], expected, atol=1e-5)
    # and it is not trivially constant: a one-cell offset is a different descriptor
    assert (features[..., interior, interior] - expected).abs().max() > 0.1


@pytest.mark.parametrize("size", [434, 100])
def test_descriptors_centred_on_cell_centres(size: int) -> None:
    """Mirroring the canvas mirrors the descriptors about each cell centre, even when S % stride != 0."""
    extractor = DenseSiftExtractor(BaselineConfig(input_size=size))
    cfg, image = extractor.config, _texture(size, size, seed=4)[None]
    nb, bins = cfg.spatial_bins, cfg.orientation_bins
    features = extractor(image).view(1, nb, nb, bins, *extractor.grid_size())
    flipped = extractor(image.flip(-1)).view_as(features)
    # x -> S - x: spatial bins reverse along x, orientation k -> O/2 - k, cells reverse along x
    mirror = torch.tensor([(bins // 2 - k) % bins for k in range(bins)])
    expected = features.flip(2)[:, :, :, mirror].flip(-1)
    assert torch.allclose(flipped, expected, atol=1e-5)


# --- 3. real images: matching through a known affine warp -------------------------------------


def _pf_willow() -> Path:
    """SEMCORR_DATA (the folder holding pf-willow/), else ../shared/data next to the repository."""
    default = Path(__file__).parents[1].parent / "shared/data"
    return Path(os.environ.get("SEMCORR_DATA", default)) / "pf-willow"


# One image per subclass (the first in sorted order), each with its own warp:
# (subclass, scale, rotation in degrees, shear).
WARPS = [
    ("car(G)", 0.88, 6.0, 0.05),
    ("car(S)", 0.85, -7.0, -0.04),
    ("duck(S)", 0.9, 5.0, 0.06),
    ("motorbike(M)", 0.87, -8.0, 0.03),
    ("winebottle(wC)", 0.86, 7.0, -0.05),
]


def _affine(
    scale: float, degrees: float, shear: float, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """(A, t) of x' = A x + t in continuous pixels, and an (H', W') canvas holding the warped image."""
    height, width = size
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    matrix = scale * rotation @ torch.tensor([[1.0, shear], [0.0, 1.0]], dtype=torch.float64)
    corners = torch.tensor([[0, 0], [width, 0], [0, height], [width, height]], dtype=torch.float64) @ matrix.T
    low, high = corners.min(0).values, corners.max(0).values
    margin = torch.tensor([12.0, 20.0], dtype=torch.float64)  # different margins: a non-square canvas
    out_w, out_h = (high - low + 2 * margin).ceil().long().tolist()
    return matrix, margin - low, (out_h, out_w)


def _warp(image: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Inverse-mapping bilinear warp of a (3, H, W) image onto an (H', W') canvas (black outside)."""
    height, width = image.shape[-2:]
    out_h, out_w = out_size
    ys, xs = torch.meshgrid(
        torch.arange(out_h, dtype=torch.float64) + 0.5, torch.arange(out_w, dtype=torch.float64) + 0.5, indexing="ij"
    )
    source = (torch.stack((xs, ys), dim=-1) - offset) @ torch.linalg.inv(matrix).T  # pixel centres back to source
    grid = torch.stack((2 * source[..., 0] / width - 1, 2 * source[..., 1] / height - 1), dim=-1).float()
    warped = F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped[0].clamp(0.0, 1.0)


def _pck_through_warp(extractor: DenseSiftExtractor, png: Path, scale: float, degrees: float, shear: float) -> float:
    from PIL import Image
    from scipy.io import loadmat

    image = torch.from_numpy(np.array(Image.open(png).convert("RGB"))).permute(2, 0, 1).float() / 255
    # pts_coord is 2 x 10 (x row, y row), 1-based Matlab pixel indices: pixel k's centre is at k - 0.5.
    keypoints = torch.from_numpy(loadmat(png.with_suffix(".mat"))["pts_coord"].T.astype(np.float64)) - 0.5
    matrix, offset, out_size = _affine(scale, degrees, shear, tuple(image.shape[-2:]))
    assert out_size[0] != out_size[1]
    warped, warped_keypoints = _warp(image, matrix, offset, out_size), keypoints @ matrix.T + offset

    source, target = extractor.extract(image), extractor.extract(warped)
    grid_points = source.geometries[0].to_grid(keypoints.float(), source.grid_size)[None]  # (1, N, 2)
    descriptors = sample_descriptors(source.features, grid_points)
    target_up = target.upsample(60)
    predicted, _ = window_soft_argmax(similarity_maps(descriptors, target_up.features))
    predicted_px = target.geometries[0].from_grid(predicted[0].double(), target_up.grid_size)
    threshold = 0.05 * (warped_keypoints.max(0).values - warped_keypoints.min(0).values).max()
    return ((predicted_px - warped_keypoints).norm(dim=-1) <= threshold).double().mean().item()


def test_pck_through_known_affine_warp(extractor: DenseSiftExtractor) -> None:
    root = _pf_willow()
    if not root.is_dir():
        pytest.skip(f"PF-WILLOW not found at {root} (set SEMCORR_DATA to the folder holding pf-willow/)")
    scores = {}
    for subclass, scale, degrees, shear in WARPS:
        png = sorted((root / subclass).glob("*.png"))[0]
        scores[f"{subclass}/{png.name}"] = _pck_through_warp(extractor, png, scale, degrees, shear)
    overall = sum(scores.values()) / len(scores)
    print("PCK@0.05 per image:", {name: round(value, 2) for name, value in scores.items()}, f"overall {overall:.3f}")
    assert overall >= 0.8, scores
