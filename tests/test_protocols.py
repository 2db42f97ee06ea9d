"""Evaluation protocols: each matcher on a shifted image, each PCK rule on hand-made predictions,
and the protocols through ``evaluate`` and ``semcorr eval`` (several models, one table)."""

import json

import numpy as np
import pytest
import torch
from conftest import data_path

from semcorr.data.pairs import Pair
from semcorr.errors import InputError
from semcorr.eval import PROTOCOLS, PCKSettings, evaluate, get_protocol
from semcorr.eval.frames import Frame
from semcorr.eval.protocol_match import match_cells, match_marco, match_pixels
from semcorr.eval.protocols import pair_frames
from semcorr.eval.result import score_predictions
from semcorr.features.base import FeatureMap
from semcorr.geometry import ImageGeometry
from semcorr.matching import kernel_soft_argmax, zeroed_window_soft_argmax

CANVAS, GRID, SHIFT = 140, 10, (2, 1)  # 14 px cells; the target is the source moved 2 cells right, 1 down


def pair(size, points, box=(0, 0, 10, 10), target=None, target_size=None):
    points = np.asarray(points, np.float32)
    target = points if target is None else np.asarray(target, np.float32)
    return Pair(
        "p",
        "synthetic",
        "thing",
        "a.png",
        "b.png",
        points,
        target,
        np.ones(len(points), bool),
        np.ones(len(points), bool),
        np.arange(len(points)),
        box,
        box,
        size,
        target_size or size,
    )


def shifted_maps(image_size, mode="square", scale=1.0, seed=0):
    """Source and target maps of a picture moved by SHIFT cells: distinct random cells, every raw norm ``scale``."""
    g = torch.Generator().manual_seed(seed)
    source = torch.randn(1, 16, GRID, GRID, generator=g)
    target = torch.randn(1, 16, GRID, GRID, generator=g)
    dx, dy = SHIFT
    target[..., dy:, dx:] = source[..., : GRID - dy, : GRID - dx]
    geometry = ImageGeometry.fit(image_size, CANVAS, mode)

    def fmap(raw):
        norms = raw.norm(dim=1, keepdim=True)
        return FeatureMap(raw / norms, (geometry,), "synthetic", norms=torch.full_like(norms, scale))

    return fmap(source), fmap(target)


class TestMatchersOnAShiftedImage:
    def test_marco_kernel_soft_argmax_on_raw_dot_products(self):
        protocol = get_protocol("marco")
        source, target = shifted_maps((CANVAS, CANVAS), scale=30.0)
        cells = np.array([[1, 2], [4, 3], [6, 6]])
        points = cells * CANVAS / GRID  # MARCO samples at x * w / S: these land exactly on cell indices
        p = pair((CANVAS, CANVAS), points)
        found = match_marco(protocol, source, target, points, pair_frames(protocol, p, CANVAS), p)
        expected = (cells + SHIFT) * (CANVAS - 1) / (GRID - 1)  # MARCO maps cell k back to k (S - 1) / (w - 1)
        assert np.abs(found - expected).max() < 1e-3

    def test_diysc_zeroed_window_soft_argmax(self):
        protocol = get_protocol("diy-sc")
        source, target = shifted_maps((CANVAS, CANVAS), mode="letterbox")
        cells = np.array([[1, 2], [4, 3], [6, 6]])
        points = cells * 14 + np.array([3.0, 12.9])  # anywhere inside the cell: the cell's descriptor
        p = pair((CANVAS, CANVAS), points)
        found = match_cells(protocol, source, target, points, pair_frames(protocol, p, CANVAS), p)
        assert np.abs(found - ((cells + SHIFT) * 14 + 7)).max() < 1e-4  # cell * 14 + 7

    def test_geco_argmax_at_image_resolution(self):
        protocol = get_protocol("geco")
        size = (70, 70)  # pixel centre 7k + 3 sits exactly on cell k of the 10x10 grid
        source, target = shifted_maps(size)
        cells = np.array([[1, 2], [4, 3], [6, 6]])
        points = cells * 7 + 3.6  # floor -> 7k + 3
        p = pair(size, points)
        found = match_pixels(protocol, source, target, points, pair_frames(protocol, p, CANVAS), p)
        assert np.array_equal(found, (cells + SHIFT) * 7 + 3)  # the pixel index, no half-pixel shift

    def test_kernels_on_hand_made_maps(self):
        similarity = torch.zeros(1, 2, 9, 9)
        similarity[0, 0, 4, 6] = 10.0
        similarity[0, 0, 0, 0] = 9.0  # far from the peak: the Gaussian (sigma 1) suppresses it
        coords, score = kernel_soft_argmax(similarity, sigma=1.0, temperature=0.1)
        assert torch.allclose(coords[0, 0], torch.tensor([6.0, 4.0]), atol=1e-4) and score[0, 0] == 10
        similarity[0, 1] = -0.5
        similarity[0, 1, 2, 3] = -0.1  # all negative: the zeroed cells outside the window win
        coords, _ = zeroed_window_soft_argmax(similarity, radius=1, beta=0.02)
        assert not torch.allclose(coords[0, 1], torch.tensor([3.0, 2.0]), atol=0.5)
        assert 0 <= coords.min() and coords.max() <= 8


class TestPCKRules:
    def test_comparison_at_exactly_alpha_l(self):
        p = pair((100, 100), [[10, 10]], box=(0, 0, 50, 40), target=[[10, 10]])
        found = [np.array([[15.0, 10.0]])]  # 5 px = 0.1 * 50
        inclusive, _ = score_predictions([p], found, (0.1,), "bbox", PCKSettings(inclusive=True))
        strict, _ = score_predictions([p], found, (0.1,), "bbox", PCKSettings(inclusive=False))
        assert inclusive["pck"]["0.1"] == 100.0 and strict["pck"]["0.1"] == 0.0

    def test_stretched_frame_scales_each_axis(self):
        """MARCO: W 200, H 100 on 770²: x scaled by 3.85, y by 7.7; the box's longer side in that frame."""
        protocol = get_protocol("marco")
        p = pair((100, 200), [[50, 50], [50, 50]], box=(0, 0, 100, 50), target=[[50, 50], [50, 50]])
        frame = pair_frames(protocol, p, 770)[1]
        assert frame.length("bbox", p.target_box, p.target_size) == pytest.approx(385.0)
        found = [np.array([[59.0, 50.0], [50.0, 56.0]])]  # 9 px in x: 34.7 <= 38.5; 6 px in y: 46.2 > 38.5
        in_frame, _ = score_predictions([p], found, (0.1,), "bbox", PCKSettings(average="image"), frames=[frame])
        original, _ = score_predictions([p], found, (0.1,), "bbox", PCKSettings(average="image"))
        assert in_frame["pck"]["0.1"] == 50.0 and original["pck"]["0.1"] == 100.0

    def test_stretched_frame_clamps_annotations(self):
        frame = Frame.of("stretched", (100, 200), 770, clamp=True)
        assert np.allclose(frame.to_frame(np.array([[200.0, 0.0]]), annotated=True), [[770 - 1 - 1e-4, 1e-4]])
        assert np.allclose(frame.to_frame(np.array([[200.0, 0.0]])), [[770.0, 0.0]])  # predictions are not

    def test_padded_frame_is_diy_sc_preprocess_kps_pad(self):
        frame = Frame.of("padded", (300, 400), 840)  # H 300, W 400: scale 2.1, new height 630, offset 105
        assert frame.scale == (2.1, 2.1) and frame.offset == (0.0, 105.0)
        assert frame.length("bbox", np.array([0, 0, 100, 40]), (300, 400)) == pytest.approx(210.0)
        assert frame.length("image", np.zeros(4), (300, 400)) == pytest.approx(840.0)

    def test_per_image_and_per_keypoint(self):
        pairs = [
            pair((100, 100), [[10, 10]] * 3, box=(0, 0, 100, 100)),
            pair((100, 100), [[10, 10]], box=(0, 0, 100, 100)),
        ]
        found = [np.array([[10.0, 10.0], [90.0, 90.0], [90.0, 90.0]]), np.array([[10.0, 10.0]])]
        scores, _ = score_predictions(pairs, found, (0.1,), "bbox")
        assert scores["pck_per_keypoint"]["0.1"] == 50.0
        assert scores["pck_per_image"]["0.1"] == pytest.approx(100 * (1 / 3 + 1) / 2)

    @pytest.mark.parametrize(
        "name,average,comparison,threshold,frame",
        [
            ("semcorr", "keypoint", "<=", None, "original"),
            ("marco", "image", "<=", None, "stretched"),
            ("diy-sc", "keypoint", "<", None, "padded"),
            ("geco", "keypoint", "<=", "image", "original"),
            ("common", "keypoint", "<=", None, "original"),
        ],
    )
    def test_each_protocol_states_its_rules(self, name, average, comparison, threshold, frame):
        fields = PROTOCOLS[name].fields()
        assert (fields["average"], fields["comparison"], fields["threshold"], fields["frame"]) == (
            average,
            comparison,
            threshold,
            frame,
        )
        assert name in PROTOCOLS[name].summary()

    def test_common_scales_the_window_with_the_grid(self):
        common = get_protocol("common")
        assert common.common_grid(31) == (60, 11) and common.common_grid(60) == (60, 11)
        assert common.common_grid(220) == (220, 41)


class TestThroughEvaluate:
    @pytest.mark.parametrize("name", ["marco", "diy-sc", "geco", "common"])
    def test_protocol_runs_and_reports_its_rules(self, name, one_thread):
        result = evaluate(
            "pf-willow",
            data_path("pf-willow"),
            model="baseline",
            protocol=name,
            limit=3,
            progress=False,
            predictions=True,
        )
        assert result["protocol"]["name"] == name and result["protocol"]["summary"].startswith(f"protocol {name}")
        input_size = PROTOCOLS[name].input_size
        if input_size:
            assert result["settings"]["extractor"]["input_size"] == input_size
        assert set(result["pck_per_image"]) == set(result["pck_per_keypoint"]) == {"0.05", "0.1", "0.15"}
        assert all(len(r["pred"]) == len(r["gt"]) for r in result["predictions"])

    def test_identity_pairs_through_the_store(self, one_thread):
        """An image matched with itself through stored features. (Not ``marco``: its temperature of 10
        is tuned to MARCO's raw feature scale; on the baseline's unit-norm descriptors its softmax is
        nearly flat. Its matcher is checked on the shifted maps above.)"""
        import dataclasses

        from semcorr.data import load_pf_willow
        from semcorr.eval import FeatureCache
        from semcorr.eval.protocol_match import predict_with
        from semcorr.features import build_extractor

        pairs = [
            dataclasses.replace(
                p,
                target_image=p.source_image,
                target_points=p.source_points,
                target_box=p.source_box,
                target_size=p.source_size,
            )
            for p in load_pf_willow(data_path("pf-willow"))[:2]
        ]
        for name in ("diy-sc", "geco"):
            protocol = PROTOCOLS[name]
            extractor = build_extractor("baseline", input_size=protocol.input_size, resize_mode=protocol.resize_mode)
            with FeatureCache(extractor, progress=False) as store:
                store.compute([p.source_image for p in pairs])
                found = predict_with(protocol, store, pairs, progress=False)
            error = max(np.abs(f - p.source_points).max() for f, p in zip(found, pairs))
            assert error < 0.05 * max(pairs[0].source_size), name  # within a cell or two of the image

    def test_fixed_rules_refuse_other_settings(self):
        from semcorr.matching import MatchSettings

        with pytest.raises(InputError, match="fixes the matching"):
            evaluate(
                "pf-willow",
                data_path("pf-willow"),
                model="baseline",
                protocol="marco",
                settings=MatchSettings(window=5),
            )
        with pytest.raises(InputError, match="fixes the PCK rules"):
            evaluate(
                "pf-willow", data_path("pf-willow"), model="baseline", protocol="geco", pck=PCKSettings(inclusive=False)
            )
        with pytest.raises(InputError, match="770² square; input_size 434"):
            evaluate("pf-willow", data_path("pf-willow"), model="baseline", protocol="marco", input_size=434)
        with pytest.raises(InputError, match="pose-align"):
            evaluate("pf-willow", data_path("pf-willow"), model="baseline", protocol="diy-sc", pose_align=True)


def test_several_models_one_table(cli, tmp_path, one_thread):
    out = tmp_path / "both.json"
    result = cli(
        "eval",
        "pf-willow",
        "--data-root",
        data_path("pf-willow"),
        "--models",
        "baseline",
        "diy-sc",
        "--random-weights",
        "--input-size",
        "112",
        "--limit",
        "3",
        "--quiet",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "2 models" in lines[0] and lines[1].startswith("protocol semcorr")
    rows = [line for line in lines if line.startswith(("baseline", "diy-sc"))]
    assert len(rows) == 2 and "(random weights)" in rows[1]
    assert "per image:" in result.stdout and "per keypoint:" in result.stdout
    saved = json.loads(out.read_text())
    assert [r["model"] for r in saved["results"]] == ["baseline", "diy-sc"]
    refused = cli(
        "eval",
        "pf-willow",
        "--data-root",
        data_path("pf-willow"),
        "--models",
        "baseline",
        "diy-sc",
        "--weights",
        "x.pth",
    )
    assert refused.returncode != 0 and "--weights" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_protocol_option_and_its_fixed_rules(cli, one_thread):
    root = data_path("pf-willow")
    result = cli(
        "eval", "pf-willow", "--data-root", root, "--model", "baseline", "--protocol", "geco", "--limit", "2", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    assert "protocol geco: 518² square; image_argmax on cosine similarity" in result.stdout
    assert "target image's longer side, averaged per keypoint, correct if distance <= alpha * L" in result.stdout
    refused = cli(
        "eval", "pf-willow", "--data-root", root, "--model", "baseline", "--protocol", "marco", "--window", "5"
    )
    assert refused.returncode != 0 and "fixes the matching" in refused.stderr
