"""``--protocol distilldift-paper``: the DistillDIFT authors' rules per benchmark, computed by hand
(as their code computes them) on constructed pairs where the rules disagree; keypoints outside
their image under each protocol; the old name ``distilldift``."""

import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
from conftest import data_path

from semcorr.data.pairs import Pair
from semcorr.errors import InputError
from semcorr.eval import PCKSettings, evaluate
from semcorr.eval.frames import Frame
from semcorr.eval.protocol_match import match_cells, source_pixels
from semcorr.eval.protocols import DEFAULT_PROTOCOL, get_protocol, pair_frames, resolve_protocol
from semcorr.eval.result import score_predictions
from semcorr.features.base import FeatureMap
from semcorr.geometry import ImageGeometry

W, H = 500, 333  # landscape target
BOX = (10.0, 20.0, 490.0, 320.0)  # 480 x 300: wider than the image is tall


def make_pair(target, size=(H, W), box=BOX, source=None):
    target = np.asarray(target, np.float32)
    source = target if source is None else np.asarray(source, np.float32)
    n = len(target)
    return Pair(
        "p",
        "spair",
        "thing",
        "a.jpg",
        "b.jpg",
        source,
        target,
        np.ones(n, bool),
        np.ones(n, bool),
        np.arange(n),
        box,
        box,
        size,
        size,
    )


def score(name, benchmark, pair, predicted, alphas=(0.1,)):
    rules = resolve_protocol(name, benchmark)
    frames = [pair_frames(rules, pair, 434)[1]]
    pck = PCKSettings(alphas=alphas, threshold=rules.threshold, average=rules.average, inclusive=rules.inclusive)
    threshold = rules.threshold or "bbox"
    scores, records = score_predictions(
        [pair], [np.asarray(predicted, np.float64)], alphas, threshold, pck, frames=frames, predictions=True
    )
    return scores, records[0]


class TestSPairEvalRule:
    """eval/: distances in the 840 x 840 stretched frame, L = max(bw, bh) * 840 / H, strict <."""

    GT = [[200.0, 150.0]] * 4
    PRED = [[260.0, 150.0], [200.0, 197.5], [200.0, 199.0], [270.0, 150.0]]  # 60 / 70 px along x, 47.5 / 49 along y

    def by_hand(self, alpha=0.1):
        """The authors' rule: keypoints scaled by 840/W and 840/H, L = max(bw, bh) * (840 / H), d < alpha L."""
        length = max(BOX[2] - BOX[0], BOX[3] - BOX[1]) * (840 / H)
        return [
            math.hypot((p[0] - g[0]) * 840 / W, (p[1] - g[1]) * 840 / H) < alpha * length
            for p, g in zip(self.PRED, self.GT)
        ]

    def test_matches_the_authors_rule_where_the_rules_disagree(self):
        expected = self.by_hand()
        assert expected == [True, True, False, True]  # x tolerance 72.07 px, y 48.0 px
        pair = make_pair(self.GT)
        paper, record = score("distilldift-paper", "spair", pair, self.PRED)
        assert paper["pck"]["0.1"] == 100 * sum(expected) / 4
        assert record["threshold_length"] == pytest.approx(480 * 840 / 333)
        assert record["comparison"] == "<" and record["frame"]["scale"] == [840 / W, 840 / H]
        own, _ = score(DEFAULT_PROTOCOL, "spair", pair, self.PRED)  # original pixels: a circle of radius 48
        assert own["pck"]["0.1"] == 25.0 and own["pck"]["0.1"] != paper["pck"]["0.1"]

    def test_strict_comparison_at_exactly_alpha_l(self):
        pair = make_pair([[100.0, 100.0]], size=(840, 840), box=(0.0, 0.0, 100.0, 50.0))  # the frame is the image
        paper, _ = score("distilldift-paper", "spair", pair, [[150.0, 100.0]], alphas=(0.5,))  # d = 50 = 0.5 * 100
        own, _ = score(DEFAULT_PROTOCOL, "spair", pair, [[150.0, 100.0]], alphas=(0.5,))
        assert paper["pck"]["0.5"] == 0.0 and own["pck"]["0.5"] == 100.0

    def test_rules_are_reported(self):
        rules = resolve_protocol("distilldift-paper", "spair").fields()
        assert (
            rules["code"],
            rules["frame"],
            rules["frame_size"],
            rules["length_rule"],
            rules["comparison"],
            rules["average"],
            rules["window"],
            rules["temperature"],
            rules["grid"],
            rules["input_size"],
        ) == ("eval/", "stretched", 840, "height scale", "<", "keypoint", 11, 0.02, "60", 434)
        assert "eval/eval.py" in rules["source"] and rules["outside"] == "count" and rules["deviations"]


def test_pf_pascal_eval_rule_uses_the_frame_side():
    """eval/ on PF-PASCAL: no thresholds, so L = 840 in the stretched frame: hypot(dx / W, dy / H) < alpha."""
    W2, H2 = 500, 250
    gt, pred = [[100.0, 100.0]] * 2, [[145.0, 100.0], [100.0, 126.0]]
    by_hand = [math.hypot((p[0] - g[0]) * 840 / W2, (p[1] - g[1]) * 840 / H2) < 0.1 * 840 for p, g in zip(pred, gt)]
    assert by_hand == [True, False]
    pair = make_pair(gt, size=(H2, W2), box=(0, 0, 10, 10))
    paper, record = score("distilldift-paper", "pf-pascal", pair, pred)
    assert paper["pck"]["0.1"] == 50.0 and record["threshold_length"] == 840.0
    own, _ = score(DEFAULT_PROTOCOL, "pf-pascal", pair, pred, alphas=(0.1,))
    own_image, _ = score_predictions([pair], [np.asarray(pred)], (0.1,), "image")  # L = max(W, H) = 500
    assert own_image["pck"]["0.1"] == 100.0 != paper["pck"]["0.1"]


def train_rule_by_hand(predicted, target, box_xywh, alpha=0.1):
    """train/eval.py as its code computes it: points and box as float16 tensors, an integer prediction,
    distance and threshold in float16, d <= alpha * max(w, h)."""
    truth = torch.tensor(target, dtype=torch.float16)
    found = torch.tensor(predicted, dtype=torch.long)
    x, y, w, h = torch.tensor(box_xywh, dtype=torch.float16)
    distances = torch.linalg.norm(found - truth, axis=-1)
    return (distances <= alpha * max(h, w)).tolist()


class TestTrainEvalRule:
    """train/eval.py (PF-WILLOW, CUB): original pixels, <=, float16 keypoints, box and distances."""

    TARGET = [[300.1, 50.0], [200.0, 150.0]]  # 300.1 is 300.0 in float16
    PRED = [[290, 50], [200, 150]]

    def test_pf_willow_box_from_the_keypoints_extent(self):
        corners = torch.tensor([200.0, 50.0, 300.1, 150.0], dtype=torch.float16)
        corners[2:] -= corners[:2].clone()  # their (x, y, x + w, y + h) -> (x, y, w, h) in float16
        expected = train_rule_by_hand(self.PRED, self.TARGET, corners.tolist())
        assert expected == [True, True]
        pair = make_pair(self.TARGET, box=(200.0, 50.0, 300.1, 150.0))
        paper, record = score("distilldift-paper", "pf-willow", pair, self.PRED)
        assert paper["pck"]["0.1"] == 100.0 and record["threshold_length"] == 100.0
        own, _ = score(DEFAULT_PROTOCOL, "pf-willow", pair, self.PRED)  # 10.1 px > 0.1 * 100.1
        assert own["pck"]["0.1"] == 50.0

    def test_cub_box_width_and_height_in_float16(self):
        x, y, w, h = 0.0, 40.0, 100.1, 90.0
        expected = train_rule_by_hand(self.PRED, self.TARGET, [x, y, w, h])
        assert expected == [True, True]
        pair = make_pair(self.TARGET, box=(x, y, x + w, y + h))
        paper, record = score("distilldift-paper", "cub", pair, self.PRED)
        assert paper["pck"]["0.1"] == 100.0 and record["threshold_length"] == pytest.approx(100.125)
        own, _ = score(DEFAULT_PROTOCOL, "cub", pair, self.PRED)
        assert own["pck"]["0.1"] == 50.0

    def test_source_pixel_rounded_and_clamped(self):
        rules, geco = resolve_protocol("distilldift-paper", "cub"), get_protocol("geco")
        points = np.array([[-3.2, 10.5], [W + 5.0, 12.5], [7.5, 8.49]])
        pair = make_pair(points)
        assert source_pixels(rules, points, (H, W), pair).tolist() == [[0, 10], [W - 1, 12], [8, 8]]  # half to even
        notes = []
        assert source_pixels(geco, points, (H, W), pair, notes).tolist() == [[W - 4, 10], [5, 12], [7, 8]]
        assert len(notes) == 1 and "counted keypoint 1" in notes[0]  # GECO's code would stop there


def test_ap10k_is_refused_in_one_line():
    with pytest.raises(InputError, match="evaluates SPair-71k, PF-WILLOW, CUB-200-2011 and PF-PASCAL only"):
        resolve_protocol("distilldift-paper", "ap10k-intra-species")


class TestEvalMatcher:
    """eval/'s matcher on a 60 x 60 map: the cell int32(60/840 * x') (truncated toward zero, the flat
    index wrapping), prediction at 14 c + 7 in the 840 frame."""

    SHIFT = (2, 1)

    def maps(self):
        g = torch.Generator().manual_seed(0)
        source = torch.randn(1, 64, 60, 60, generator=g)
        target = torch.randn(1, 64, 60, 60, generator=g)
        dx, dy = self.SHIFT
        target[..., dy:, dx:] = source[..., : 60 - dy, : 60 - dx]
        geometry = ImageGeometry.fit((H, W), 840, "square")

        def fmap(raw):
            norms = raw.norm(dim=1, keepdim=True)
            return FeatureMap(raw / norms, (geometry,), "synthetic", norms=norms)

        return fmap(source), fmap(target)

    def test_cells_truncation_and_wrap(self):
        rules = resolve_protocol("distilldift-paper", "spair")
        cell = np.array([W / 60, H / 60])
        points = np.array([[10.3, 20.6], [30.9, 5.2], [-0.2, 12.5], [-3.4, 12.5]]) * cell  # last two: left of the image
        pair = make_pair(points)
        source, target = self.maps()
        notes = []
        found = match_cells(rules, source, target, points, pair_frames(rules, pair, 434), pair, notes)
        # -0.2 cells -> cell 0 (not -1); -3.4 cells -> cell -3 -> the flat index wraps to cell 57 of the row above
        cells = np.array([[10, 20], [30, 5], [0, 12], [57, 11]]) + self.SHIFT
        expected = (cells * 14 + 7) * np.array([W / 840, H / 840])
        assert np.abs(found - expected).max() < 1e-3 and not notes

    def test_index_past_the_grid_is_wrapped_on_with_a_note(self):
        rules = resolve_protocol("distilldift-paper", "spair")
        points = np.array([[5.0, H + 40.0]])  # below the image: row >= 60, an IndexError in the authors' code
        pair = make_pair(points)
        source, target = self.maps()
        notes = []
        found = match_cells(rules, source, target, points, pair_frames(rules, pair, 434), pair, notes)
        assert np.isfinite(found).all() and len(notes) == 1


def recompute(records, alpha_key):
    """PCK from saved predictions alone, as docs/evaluation-protocols.md shows it."""
    correct = total = 0
    for r in records:
        (sx, sy), (ox, oy), clamp = r["frame"]["scale"], r["frame"]["offset"], r["frame"]["clamp"]
        for (px, py), (gx, gy) in zip(r["pred"], r["gt"]):
            gx, gy = gx * sx + ox, gy * sy + oy
            if clamp:
                gx, gy = min(max(gx, clamp[0]), clamp[1]), min(max(gy, clamp[0]), clamp[1])
            d = math.hypot(px * sx + ox - gx, py * sy + oy - gy)
            limit = r["thresholds"][alpha_key]
            correct += d <= limit if r["comparison"] == "<=" else d < limit
            total += 1
    return 100 * correct / total


def spair_copy(tmp_path, edit):
    root = tmp_path / "SPair-71k"
    shutil.copytree(data_path("spair-71k-mini", "SPair-71k"), root)
    path = sorted((root / "PairAnnotation" / "test").glob("*.json"))[0]
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return root, path.stem


class TestOutsideKeypoints:
    def test_counted_by_the_authors_left_out_by_semcorr(self, tmp_path, one_thread):
        def outside(data):  # the first counted target keypoint 60 px right of its 500-wide image
            data["trg_kps"][0] = [data["trg_imsize"][0] + 60.0, data["trg_kps"][0][1]]

        root, pair_id = spair_copy(tmp_path, outside)
        common = dict(model="baseline", progress=False, predictions=True)
        with pytest.warns(UserWarning, match="outside their image and are left out"):
            own = evaluate("spair", root, **common)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paper = evaluate("spair", root, protocol="distilldift-paper", **common)
        assert not [w for w in caught if "outside" in str(w.message)]  # the authors count it
        assert paper["n_keypoints"] == own["n_keypoints"] + 1
        record = next(r for r in paper["predictions"] if r["id"] == pair_id)
        assert record["gt"][0][0] == 560.0 and record["frame"]["clamp"] is None
        # the saved records alone give the result, by the authors' rule in original pixels
        correct = total = 0
        for r in paper["predictions"]:
            height, width = r["target_size"]
            x1, y1, x2, y2 = r["target_box"]
            for (px, py), (gx, gy) in zip(r["pred"], r["gt"]):
                correct += math.hypot((px - gx) * height / width, py - gy) < 0.1 * max(x2 - x1, y2 - y1)
                total += 1
        assert 100 * correct / total == pytest.approx(paper["pck"]["0.1"])
        for key in ("0.1", "0.05", "0.01"):
            assert recompute(paper["predictions"], key) == pytest.approx(paper["pck_per_keypoint"][key])
            assert recompute(own["predictions"], key) == pytest.approx(own["pck_per_keypoint"][key])
        assert paper["pairs_digest"] == own["pairs_digest"]  # the same pair list, other rules

    def test_marco_clamps_them_into_its_canvas(self, tmp_path, one_thread):
        def outside(data):
            data["trg_kps"][0] = [data["trg_imsize"][0] + 60.0, data["trg_kps"][0][1]]

        root, pair_id = spair_copy(tmp_path, outside)
        result = evaluate("spair", root, model="baseline", protocol="marco", limit=1, progress=False, predictions=True)
        record = next(r for r in result["predictions"] if r["id"] == pair_id)
        assert record["frame"]["clamp"] == [1e-4, 770 - 1 - 1e-4] and record["gt"][0][0] == 560.0
        frame = Frame(tuple(record["frame"]["scale"]), tuple(record["frame"]["offset"]), (1e-4, 770 - 1 - 1e-4), 770)
        clamped = frame.to_frame(np.array([record["gt"][0]]), annotated=True)[0, 0]
        assert clamped == pytest.approx(770 - 1 - 1e-4, abs=1e-3)
        assert recompute(result["predictions"], "0.1") == pytest.approx(result["pck_per_keypoint"]["0.1"])


def test_old_name_warns_once_and_runs_semcorr(cli, tmp_path, one_thread):
    out = tmp_path / "r.json"
    result = cli(
        "eval",
        "pf-willow",
        "--data-root",
        data_path("pf-willow"),
        "--model",
        "baseline",
        "--limit",
        "2",
        "--quiet",
        "--protocol",
        "distilldift",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "distilldift" in line]
    assert len(lines) == 1 and "now called semcorr" in lines[0] and "distilldift-paper" in lines[0]
    assert json.loads(out.read_text())["protocol"]["name"] == "semcorr"
    default = cli(
        "eval", "pf-willow", "--data-root", data_path("pf-willow"), "--model", "baseline", "--limit", "2", "--quiet"
    )
    assert default.returncode == 0 and "protocol semcorr" in default.stdout and "now called" not in default.stderr
