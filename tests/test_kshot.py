"""``semcorr eval BENCH --transfer-shots K`` (:func:`semcorr.eval.kshot.evaluate_kshot`) on real benchmarks."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import data_path

from semcorr.data import load_pf_willow
from semcorr.errors import InputError
from semcorr.eval import FeatureCache
from semcorr.eval.kshot import annotated_images, draw_examples, evaluate_kshot
from semcorr.eval.runner import predict
from semcorr.features import build_extractor
from semcorr.matching import MatchSettings


def test_command_on_one_pf_willow_subclass(cli, tmp_path):
    out, predictions = tmp_path / "r.json", tmp_path / "p.json"
    result = cli(
        "eval",
        "pf-willow",
        "--data-root",
        data_path("pf-willow"),
        "--model",
        "baseline",
        "--limit",
        "90",
        "--transfer-shots",
        "3",
        "--quiet",
        "--out",
        out,
        "--save-predictions",
        predictions,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["title"] == "PF-WILLOW 3-shot transfer" and "3-shot transfer" in result.stdout
    assert list(summary["per_category"]) == ["car(G)"] and summary["n_pairs"] == 7 and summary["n_keypoints"] == 70
    examples = summary["transfer"]["examples"]["car(G)"]
    assert len(examples) == 3 and summary["transfer"]["seed"] == 0 and summary["n_images"] == 10
    records = json.loads(predictions.read_text())
    assert len(records) == 7 and not {r["id"].split("/")[1] + ".png" for r in records} & {e[-13:] for e in examples}
    correct = sum(
        math.hypot(x - gx, y - gy) <= 0.1 * r["threshold_length"]
        for r in records
        for (x, y), (gx, gy) in zip(r["pred"], r["gt"])
    )
    assert 100.0 * correct / 70 == pytest.approx(summary["pck"]["0.1"])
    assert summary["pck"]["0.1"] > summary["chance"]["pck"]["0.1"]
    confident = summary["transfer"]["confident"]
    assert confident["min_confidence"] == 0.5 and 0 <= confident["kept_percent"] <= 100


def test_more_examples_label_pf_willow_better_on_the_same_targets(cli, tmp_path):
    """The curve of the weight-free baseline on all of PF-WILLOW (seed 0): 3 examples beat 1 and 5 beat
    3, overall and on most subclasses, and more keypoints are both labelled (confidence >= 0.5) and
    right (with the geometric median and its agreement confidence they were fewer: 15.0, 10.7, 9.6 %
    of the keypoints over five seeds)."""
    out, predictions = tmp_path / "curve.json", tmp_path / "p.json"
    result = cli(
        "eval",
        "pf-willow",
        "--data-root",
        data_path("pf-willow"),
        "--model",
        "baseline",
        "--quiet",
        "--transfer-shots",
        "5",
        "1",
        "3",
        "--out",
        out,
        "--save-predictions",
        predictions,
    )
    assert result.returncode == 0, result.stderr
    assert "k-shot transfer curve" in result.stdout and "1-shot  3-shot  5-shot" in result.stdout
    curve = json.loads(out.read_text())
    assert curve["shots"] == [1, 3, 5] and curve["n_targets"] == 50
    pck = {k: curve["curve"]["pck"][k]["0.1"] for k in ("1", "3", "5")}
    assert pck["1"] < pck["3"] < pck["5"], pck
    categories = curve["curve"]["per_category"]
    assert len(categories) == 10
    assert sum(c["3"]["0.1"] > c["1"]["0.1"] for c in categories.values()) >= 6
    assert sum(c["5"]["0.1"] > c["3"]["0.1"] for c in categories.values()) >= 6
    right = {k: curve["curve"]["kept_percent"][k] * curve["curve"]["pck_kept"][k]["0.1"] for k in ("1", "3", "5")}
    assert right["1"] < right["3"] < right["5"], right
    records = json.loads(predictions.read_text())
    targets = {k: [r["id"] for r in records if r["shots"] == k] for k in (1, 3, 5)}
    assert len(targets[1]) == 50 and targets[1] == targets[3] == targets[5]
    examples = {k: curve["results"][str(k)]["transfer"]["examples"] for k in (1, 3, 5)}
    assert all(set(examples[1][g]) < set(examples[3][g]) < set(examples[5][g]) for g in categories)
    assert not set(targets[1]) & {f"{g}/{Path(e).stem}" for g, shown in examples[5].items() for e in shown}


def test_one_shot_is_pair_evaluation_of_the_example_with_each_target():
    pairs = load_pf_willow(data_path("pf-willow"))[:90]
    extractor = build_extractor("baseline", input_size=224)
    result = evaluate_kshot(
        "pf-willow",
        data_path("pf-willow"),
        shots=1,
        seed=3,
        model=extractor,
        limit=90,
        predictions=True,
        progress=False,
    )
    example = result["transfer"]["examples"]["car(G)"][0]
    chosen = [p for p in pairs if str(p.source_image) == example]
    with FeatureCache(extractor, progress=False) as store:
        store.compute([chosen[0].source_image] + [p.target_image for p in chosen])
        found = predict(store, chosen, MatchSettings(), progress=False)
    assert len(result["predictions"]) == len(chosen) == 9
    for record, pair, points in zip(result["predictions"], chosen, found):
        assert record["id"] == f"car(G)/{pair.target_image.stem}"
        assert np.allclose(record["pred"], points, atol=1e-3)


def test_draws_are_fixed_per_group_and_seed():
    groups = annotated_images(load_pf_willow(data_path("pf-willow")))
    assert len(groups) == 10 and all(len(images) == 10 for images in groups.values())
    first = {g: draw_examples(images, 3, 0, g) for g, images in groups.items()}
    assert first == {g: draw_examples(images, 3, 0, g) for g, images in groups.items()}
    assert first != {g: draw_examples(images, 3, 1, g) for g, images in groups.items()}
    assert all(len(set(rows)) == 3 for rows in first.values())
    for group, images in groups.items():  # fewer examples are among more: a curve adds examples, nothing else
        one, five = set(draw_examples(images, 1, 0, group)), set(draw_examples(images, 5, 0, group))
        assert one < set(first[group]) < five


def test_spair_with_pose_alignment_and_groups_too_small(tmp_path):
    result = evaluate_kshot(
        "spair", data_path("spair-71k-mini"), shots=1, model="baseline", pose_align=True, progress=False, input_size=224
    )
    assert result["n_pairs"] > 0 and result["pose_align"]["enabled"]
    assert set(result["per_category"]) | set(result["transfer"]["skipped_groups"]) == {
        "aeroplane",
        "cow",
        "dog",
        "horse",
        "motorbike",
        "pottedplant",
    }
    with pytest.raises(InputError, match="no SPair-71k test category has more than 40 images"):
        evaluate_kshot("spair", data_path("spair-71k-mini"), shots=40, model="baseline", progress=False)


def test_bad_shots_is_one_line(cli):
    result = cli(
        "eval", "pf-willow", "--data-root", data_path("pf-willow"), "--model", "baseline", "--transfer-shots", "0"
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "--transfer-shots" in lines[0]
