"""Dense warps (``semcorr warp``, :func:`semcorr.transfer.dense_warp`) with the baseline on a real photo:
an image against a shifted crop of itself, where every pixel's true match is known."""

import numpy as np
import pytest
import torch
from conftest import data_path
from PIL import Image

from semcorr.features import build_extractor
from semcorr.transfer import WarpSettings, dense_warp
from semcorr.transfer.warp import warp_labels, warp_mask

HEIGHT, WIDTH, DX, DY = 260, 380, 23, 17


@pytest.fixture(scope="module")
def shifted():
    """(A, B, truth): two crops of a real photo, B's content shifted by (DX, DY); truth (H, W, 2) is the A
    pixel each B pixel shows, ``inside`` where that lies in A."""
    photo = np.asarray(Image.open(data_path("rgbd-livingroom", "rgb", "00000.jpg")).convert("RGB"))
    a, b = photo[:HEIGHT, :WIDTH].copy(), photo[DY : DY + HEIGHT, DX : DX + WIDTH].copy()
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    truth = np.stack([xs + DX, ys + DY], axis=-1)
    inside = (truth[..., 0] < WIDTH) & (truth[..., 1] < HEIGHT)
    return a, b, truth, inside


def ellipse(shift=(0, 0)):
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    return ((xs + shift[0] - 190) / 95) ** 2 + ((ys + shift[1] - 125) / 70) ** 2 < 1


@pytest.fixture(scope="module")
def warp(shifted):
    a, b, _, _ = shifted
    return dense_warp(
        torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1), model=build_extractor("baseline")
    )


def test_warp_onto_own_shift_reproduces_the_shift(warp, shifted):
    _, _, truth, inside = shifted
    assert warp.mapping.shape == (HEIGHT, WIDTH, 2) and warp.confidence.shape == (HEIGHT, WIDTH)
    error = np.linalg.norm(warp.mapping.numpy() - truth, axis=-1)[inside]
    cell = 14 * WIDTH / 434  # one native feature cell in original pixels (434 px canvas, 14 px cells)
    assert np.median(error) < cell and np.median(error) < 3.0
    confidence = warp.confidence.numpy()
    assert 0 <= confidence.min() and confidence.max() <= 1
    assert confidence[inside].mean() > confidence[~inside].mean()  # parts of B that A does not show return worse


def test_warped_mask_matches_the_truth(warp):
    mask = warp_mask(warp, torch.from_numpy(ellipse())).numpy()
    truth = ellipse((DX, DY))
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.9


def test_labels_carry_by_nearest_neighbour(warp):
    labels = torch.zeros(1, HEIGHT, WIDTH, dtype=torch.uint8)
    labels[0, :, : WIDTH // 3], labels[0, :, WIDTH // 3 :] = 3, 7
    carried = warp_labels(warp, labels)
    assert carried.dtype == torch.uint8 and set(carried.unique().tolist()) <= {3, 7}


def test_warp_command_writes_mask_parts_image_confidence_and_mapping(cli, shifted, tmp_path):
    a, b, _, inside = shifted
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    Image.fromarray(ellipse().astype(np.uint8) * 255).save(tmp_path / "a_mask.png")
    common = ("--model", "baseline")
    result = cli(
        "warp",
        tmp_path / "a.png",
        tmp_path / "b.png",
        "--out",
        tmp_path / "b_mask.png",
        "--mask",
        tmp_path / "a_mask.png",
        "--confidence",
        tmp_path / "conf.png",
        "--mapping",
        tmp_path / "map.npy",
        *common,
    )
    assert result.returncode == 0, result.stderr
    mask = np.asarray(Image.open(tmp_path / "b_mask.png"))
    assert mask.shape == (HEIGHT, WIDTH) and set(np.unique(mask)) <= {0, 255}
    truth = ellipse((DX, DY))
    assert ((mask > 0) & truth).sum() / ((mask > 0) | truth).sum() >= 0.9
    assert np.asarray(Image.open(tmp_path / "conf.png")).shape == (HEIGHT, WIDTH)
    assert np.load(tmp_path / "map.npy").shape == (HEIGHT, WIDTH, 2)
    image = cli("warp", tmp_path / "a.png", tmp_path / "b.png", "--out", tmp_path / "warped.png", *common)
    assert image.returncode == 0, image.stderr
    warped = np.asarray(Image.open(tmp_path / "warped.png")).astype(float)
    assert np.median(np.abs(warped - b.astype(float))[inside]) < 20
    parts = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    parts[:, : WIDTH // 2] = (200, 30, 30)
    parts[:, WIDTH // 2 :] = (20, 40, 220)
    Image.fromarray(parts).save(tmp_path / "parts.png")
    carried = cli(
        "warp",
        tmp_path / "a.png",
        tmp_path / "b.png",
        "--out",
        tmp_path / "b_parts.png",
        "--parts",
        tmp_path / "parts.png",
        *common,
    )
    assert carried.returncode == 0, carried.stderr
    colours = {tuple(c) for c in np.asarray(Image.open(tmp_path / "b_parts.png")).reshape(-1, 3)}
    assert colours == {(200, 30, 30), (20, 40, 220)}


def test_warp_command_bad_input(cli, tmp_path):
    image = data_path("pf-willow", "car(G)", "Cars_006a.png")
    result = cli("warp", image, image, "--out", tmp_path / "out.jpg", "--model", "baseline")
    assert result.returncode == 1 and "must be a .png file" in result.stderr
    (tmp_path / "small.png").write_bytes(b"")
    Image.new("L", (5, 5)).save(tmp_path / "small.png")
    result = cli(
        "warp", image, image, "--out", tmp_path / "out.png", "--mask", tmp_path / "small.png", "--model", "baseline"
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "5x5 pixels but image A" in lines[0]


def test_settings_check_themselves():
    with pytest.raises(ValueError, match="--cycle-tolerance"):
        WarpSettings(cycle_tolerance=0)


def test_unconfident_cells_take_their_confident_neighbours_matches():
    from semcorr.transfer.warp import fill_unconfident

    mapping = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="xy")) + 5.0  # shift by 5
    confidence = torch.ones(8, 8)
    mapping[:, 3, 4], confidence[3, 4] = torch.tensor([60.0, -9.0]), 0.1  # a random match that did not come back
    filled = fill_unconfident(mapping, confidence, 0.5, 2.0)
    assert torch.allclose(filled[:, 3, 4], torch.tensor([9.0, 8.0]), atol=0.6)
    assert torch.equal(torch.cat([filled[:, :3], filled[:, 4:]], 1), torch.cat([mapping[:, :3], mapping[:, 4:]], 1))
    assert torch.equal(fill_unconfident(mapping, torch.zeros(8, 8), 0.5, 2.0), mapping)  # nothing to fill from
