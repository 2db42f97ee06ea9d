"""Zero-shot segmentation: real objects cut by a known mask and pasted on plain backgrounds."""

import numpy as np
import pytest
import torch
from conftest import data_path
from PIL import Image, ImageDraw

from semcorr import build_extractor
from semcorr.errors import InputError
from semcorr.segment import SegmentSettings, enclosed_background, kmeans, segment_images
from semcorr.segment.refine import refine_mask

W, H = 320, 240
# The baseline's default descriptor spans 64 input px (tuned for matching); segmentation wants local
# features, so these tests use 4 x 4 bins of 4 px (16 px, about one DINOv2 patch).
LOCAL = {"cell_size": 4}


def known_mask(shape):
    mask = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "ellipse":
        draw.ellipse((0.08 * W, 0.08 * H, 0.92 * W, 0.92 * H), fill=255)
    else:  # a concave arrowhead
        draw.polygon(
            [(0.08 * W, 0.92 * H), (0.3 * W, 0.08 * H), (0.7 * W, 0.15 * H), (0.92 * W, 0.9 * H), (0.5 * W, 0.7 * H)],
            fill=255,
        )
    return np.asarray(mask) > 127


def composite(photo, box, shape, background):
    """(3, H, W) float image and (H, W) bool mask: the photo inside the mask, ``background`` outside."""
    mask = known_mask(shape)
    inside = np.asarray(photo.resize((W, H), box=box), dtype=np.float64) / 255
    image = np.where(mask[..., None], inside, background).clip(0, 1)
    return torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(mask)


def iou(a, b):
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def cases():
    """Two real objects (a PF-WILLOW motorbike, a living-room corner), each over a plain grey and
    over a lightly textured (smooth colour ramp) background."""
    motorbike = Image.open(data_path("pf-willow", "motorbike(G)", "Motorbikes_001a.png")).convert("RGB")
    room = Image.open(data_path("rgbd-livingroom", "rgb", "00000.jpg")).convert("RGB")
    plain = np.full((H, W, 3), (0.55, 0.6, 0.65))
    ramp = (
        np.linspace(0.35, 0.75, W)[None, :, None] * np.array([1.0, 0.95, 0.85]) + np.linspace(0, 0.1, H)[:, None, None]
    )
    return [
        composite(motorbike, None, "ellipse", plain),
        composite(room, (0, 100, 320, 340), "arrow", plain),
        composite(motorbike, None, "arrow", ramp),
        composite(room, (300, 100, 620, 340), "ellipse", ramp),
    ]


class TestSegmentation:
    def test_baseline_masks_match_the_known_masks(self, cases):
        masks = segment_images([image for image, _ in cases], model=build_extractor("baseline", **LOCAL))
        scores = [iou(mask, truth) for mask, (_, truth) in zip(masks, cases)]
        assert all(mask.shape == (H, W) and mask.dtype == torch.bool for mask in masks)
        assert min(scores) >= 0.8, scores

    def test_letterbox_geometry_without_refinement(self, cases):
        # mid grey, the letterbox padding's colour: the padding's edge would otherwise be texture to the baseline
        motorbike = Image.open(data_path("pf-willow", "motorbike(G)", "Motorbikes_001a.png")).convert("RGB")
        image, truth = composite(motorbike, None, "ellipse", np.full((H, W, 3), 0.5))
        extractor = build_extractor("baseline", resize_mode="letterbox", **LOCAL)
        mask = segment_images(image, model=extractor, settings=SegmentSettings(refine_band=0))[0]
        # unrefined, masks grow by about half a descriptor (8 input px) around the object
        assert mask.shape == (H, W) and iou(mask, truth) > 0.8 and mask[truth].float().mean() > 0.95

    def test_command_writes_0_255_pngs_of_image_size_equal_to_the_api(self, cli, cases, tmp_path):
        paths = []
        for i, (image, _) in enumerate(cases[:2]):
            paths.append(tmp_path / f"object{i}.png")
            Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(paths[-1])
        result = cli("segment", *paths, "--out", tmp_path / "masks", "--model", "baseline")
        assert result.returncode == 0, result.stderr
        expected = segment_images(paths[1], model="baseline")[0]
        for i in range(2):
            mask = np.asarray(Image.open(tmp_path / "masks" / f"object{i}.png"))
            assert mask.shape == (H, W) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
        assert np.array_equal(mask == 255, expected.numpy())

    def test_no_image_and_bad_file(self, tmp_path):
        with pytest.raises(InputError, match="at least one image"):
            segment_images([], model="baseline")
        (tmp_path / "bad.png").write_text("not an image")
        with pytest.raises(InputError, match="bad.png"):
            segment_images(tmp_path / "bad.png", model="baseline")


class TestKMeans:
    def test_separates_two_blobs_deterministically(self):
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(200, 8, generator=generator) * 0.1
        b = torch.randn(50, 8, generator=generator) * 0.1 + 2.0
        labels, centroids = kmeans(torch.cat([a, b]), 2, seed=3)
        assert len(set(labels[:200].tolist())) == 1 and len(set(labels[200:].tolist())) == 1
        assert labels[0] != labels[-1] and centroids.shape == (2, 8)
        again, _ = kmeans(torch.cat([a, b]), 2, seed=3)
        assert torch.equal(labels, again)

    def test_identical_points_and_too_few(self):
        labels, _ = kmeans(torch.ones(10, 3), 2)
        assert labels.shape == (10,)
        with pytest.raises(ValueError, match="M >= k"):
            kmeans(torch.ones(1, 3), 2)


class TestMaskSteps:
    def test_enclosed_background_is_a_hole_and_open_background_is_not(self):
        foreground = torch.zeros(9, 9, dtype=torch.bool)
        foreground[2:7, 2:7] = True
        foreground[4, 4] = False  # a hole
        foreground[2:5, 6] = False  # a notch open to the outside
        holes = enclosed_background(foreground, torch.ones(9, 9, dtype=torch.bool))
        assert holes.nonzero().tolist() == [[4, 4]]

    def test_refinement_snaps_to_the_colour_edge_within_its_band_only(self):
        image = torch.full((3, 60, 80), 0.5)
        image[:, :, 40:] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)  # the object: x >= 40
        coarse = torch.zeros(60, 80, dtype=torch.bool)
        coarse[:, 33:] = True  # 7 px too wide
        refined = refine_mask(image, coarse, radius=10)
        assert refined[:, 40:].all() and not refined[:, :40].any()
        assert torch.equal(refine_mask(image, coarse, radius=3)[:, :30], coarse[:, :30])
