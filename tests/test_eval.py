"""``semcorr eval`` and :func:`semcorr.eval.evaluate` end to end on real benchmarks."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import data_path

from semcorr.data import load_pf_willow
from semcorr.errors import InputError
from semcorr.eval import FeatureCache, PCKSettings, evaluate
from semcorr.eval.result import score_predictions
from semcorr.eval.runner import predict
from semcorr.features import build_extractor
from semcorr.matching import MatchSettings


def recompute_pck(records, alpha):
    """Independent PCK per keypoint from saved predictions: d <= alpha * L."""
    correct = total = 0
    for record in records:
        for (x, y), (gx, gy) in zip(record["pred"], record["gt"]):
            correct += math.hypot(x - gx, y - gy) <= alpha * record["threshold_length"]
            total += 1
    return 100.0 * correct / total


class TestEvalCommand:
    def test_full_pf_willow_with_the_baseline(self, cli, tmp_path):
        root = data_path("pf-willow")
        out, predictions = tmp_path / "result.json", tmp_path / "preds.json"
        result = cli(
            "eval",
            "pf-willow",
            "--data-root",
            str(root),
            "--model",
            "baseline",
            "--out",
            str(out),
            "--save-predictions",
            str(predictions),
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(out.read_text())
        assert summary["n_pairs"] == 900 and summary["n_keypoints"] == 9000 and summary["split"] == "test"
        assert summary["benchmark"] == "pf-willow" and summary["model"] == "baseline" and not summary["random_weights"]
        assert set(summary["pck"]) == {"0.05", "0.1", "0.15"}
        assert set(summary["per_category"]) == {"car", "duck", "motorbike", "winebottle"}
        assert summary["per_category"]["duck"]["n_pairs"] == 90
        assert summary["settings"]["matching"] == {
            "grid": 60,
            "method": "window_soft_argmax",
            "window": 11,
            "temperature": 0.02,
        }
        assert summary["settings"]["extractor"]["input_size"] == 434
        assert summary["settings"]["pck"] == {
            "alphas": [0.05, 0.1, 0.15],
            "threshold": "bbox",
            "average": "keypoint",
            "comparison": "<=",
        }
        assert summary["wall_time_s"] > 0 and summary["timing"]["images_computed"] == 100
        # better than guessing a random point inside the target box
        assert summary["pck"]["0.1"] > summary["chance"]["pck"]["0.1"] + 5
        records = json.loads(predictions.read_text())
        assert len(records) == 900 and all(len(r["pred"]) == len(r["gt"]) == 10 for r in records)
        assert set(records[0]) == {
            "id",
            "category",
            "source_image",
            "target_image",
            "source_size",
            "target_size",
            "keypoint_ids",
            "source_points",
            "pred",
            "gt",
            "target_box",
            "threshold_length",
            "thresholds",
            "comparison",
            "frame",
        }
        assert records[0]["frame"]["scale"] == [1.0, 1.0] and records[0]["comparison"] == "<="
        x1, y1, x2, y2 = records[0]["target_box"]
        assert records[0]["threshold_length"] == pytest.approx(max(x2 - x1, y2 - y1))
        assert records[0]["thresholds"]["0.1"] == pytest.approx(0.1 * records[0]["threshold_length"])
        for alpha in (0.05, 0.1, 0.15):
            assert recompute_pck(records, alpha) == pytest.approx(summary["pck"][str(alpha)], abs=0.01)
        assert "car" in result.stdout and "random guess in box" in result.stdout

    def test_spair_mini_table_has_six_categories(self, cli, tmp_path):
        result = cli(
            "eval",
            "spair",
            "--data-root",
            str(data_path("spair-71k-mini")),
            "--model",
            "baseline",
            "--quiet",
            "--out",
            str(tmp_path / "r.json"),
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads((tmp_path / "r.json").read_text())
        assert summary["n_pairs"] == 12 and len(summary["per_category"]) == 6
        assert set(summary["pck"]) == {"0.1", "0.05", "0.01"}
        for category in ("aeroplane", "cow", "dog", "horse", "motorbike", "pottedplant"):
            assert any(line.startswith(category) for line in result.stdout.splitlines())

    def test_bad_input_is_one_line(self, cli, tmp_path, capsys):
        result = cli("eval", "spair", "--data-root", str(tmp_path / "absent"), "--model", "baseline")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and "absent" in lines[0] and "Traceback" not in result.stderr
        from semcorr.cli import main

        for args, culprit in (
            (("nowhere", "--data-root", str(tmp_path)), "nowhere"),
            (("pf-willow", "--data-root", str(tmp_path), "--model", "baseline", "--limit", "0"), "--limit"),
            (("pf-willow", "--data-root", str(tmp_path), "--model", "baseline"), "subclass folders"),
            (("spair", "--data-root", str(tmp_path), "--loader-option", "layout"), "KEY=VALUE"),
        ):
            assert main(["eval", *args]) == 1
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and culprit in lines[0]


class TestEvaluateAPI:
    def test_limit_disk_cache_reused_and_equal_to_memory(self, tmp_path):
        root = data_path("spair-71k-mini")
        extractor = build_extractor("baseline")
        common = dict(model=extractor, limit=3, progress=False, predictions=True)
        first = evaluate("spair", root, cache_dir=tmp_path / "cache", **common)
        assert (
            first["n_pairs"] == 3 and first["n_pairs_in_split"] == 12 and first["settings"]["feature_cache"] == "disk"
        )
        files = list((tmp_path / "cache").rglob("*.safetensors"))
        assert len(files) == first["n_images"] == 4 and first["timing"]["images_computed"] == 4
        second = evaluate("spair", root, cache_dir=tmp_path / "cache", **common)
        assert second["timing"]["images_computed"] == 0
        memory = evaluate("spair", root, cache="memory", **common)
        assert memory["settings"]["feature_cache"] == "memory"
        for other in (second, memory):
            assert other["pck"] == first["pck"] and other["predictions"] == first["predictions"]

    @pytest.mark.parametrize("mode", ["memory", "disk"])
    def test_native_maps_keep_the_raw_norms(self, mode):
        images = [p.source_image for p in load_pf_willow(data_path("pf-willow"))[:2]]
        extractor = build_extractor("baseline", input_size=112)
        fresh = extractor.extract(images)
        with FeatureCache(extractor, mode=mode, progress=False) as store:
            store.compute(images)
            native, upsampled = store.feature_map(images), store.feature_map(images, 16)
        assert torch.allclose(native.norms, fresh.norms, atol=1e-6) and upsampled.norms is None
        assert torch.allclose(native.raw_features(), fresh.raw_features(), rtol=1e-3, atol=1e-6)

    def test_upsampled_maps_are_bounded_and_equal_to_fresh_ones(self):
        pairs = load_pf_willow(data_path("pf-willow"))[:12]
        extractor = build_extractor("baseline", input_size=112)
        found = []
        for limit in (None, 1):  # 1 byte: keep only the latest upsampled map
            with FeatureCache(extractor, progress=False) as store:
                store.upsampled_limit = limit or store.upsampled_limit
                store.compute([p.source_image for p in pairs] + [p.target_image for p in pairs])
                found.append(predict(store, pairs, MatchSettings(), batch_size=4, progress=False))
                assert len(store._upsampled) == (1 if limit else 10)
        assert all(np.array_equal(a, b) for a, b in zip(*found))

    def test_identity_pairs_are_matched_exactly(self):
        """A pair of an image with itself: the whole pipeline must put every point back in place."""
        pairs = load_pf_willow(data_path("pf-willow"))[:40:10]
        pairs = [
            dataclasses.replace(
                p,
                target_image=p.source_image,
                target_points=p.source_points,
                target_box=p.source_box,
                target_size=p.source_size,
            )
            for p in pairs
        ]
        with FeatureCache(build_extractor("baseline"), progress=False) as store:
            store.compute([p.source_image for p in pairs])
            found = predict(store, pairs, MatchSettings(), progress=False)
        scores, _ = score_predictions(pairs, found, (0.05,), "bbox")
        assert scores["pck"]["0.05"] == 100.0
        assert max(np.abs(f - p.source_points).max() for f, p in zip(found, pairs)) < 6  # under one 60x60 cell

    def test_options_reach_the_result(self):
        result = evaluate(
            "pf-willow",
            data_path("pf-willow"),
            model="baseline",
            limit=3,
            progress=False,
            pck=PCKSettings(alphas=(0.2,), threshold="image", average="image", inclusive=False),
            settings=MatchSettings(grid=None, method="nearest"),
            input_size=224,
        )
        assert result["settings"]["pck"] == {
            "alphas": [0.2],
            "threshold": "image",
            "average": "image",
            "comparison": "<",
        }
        assert (
            result["settings"]["matching"]["method"] == "nearest"
            and result["settings"]["extractor"]["input_size"] == 224
        )
        assert result["pck"] == result["pck_per_image"] and "image's longer side" in result["protocol"]["pck"]
        with pytest.raises(InputError, match="preset name"):
            evaluate("pf-willow", data_path("pf-willow"), model=build_extractor("baseline"), input_size=224)
