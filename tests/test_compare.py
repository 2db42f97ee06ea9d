"""Results files (``semcorr eval --out``) and ``semcorr compare``: versioned, with the weights' and the
pair list's digests; side by side only under the same protocol and pair list, unless asked."""

import json

import pytest
import torch
from conftest import data_path
from helpers import tiny_backbone

from semcorr import __version__
from semcorr.eval import evaluate
from semcorr.eval.digest import pairs_digest, weights_digest
from semcorr.features import build_extractor
from semcorr.features.backbones.dinov2 import DinoV2Extractor
from semcorr.features.config import DinoV2Config


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Results of the baseline on PF-WILLOW under semcorr (two input sizes), under geco, and on more pairs."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("results")
    root = data_path("pf-willow")
    made = {
        "a": evaluate("pf-willow", root, model="baseline", limit=3, progress=False),
        "b": evaluate("pf-willow", root, model="baseline", limit=3, progress=False, input_size=224),
        "geco": evaluate("pf-willow", root, model="baseline", limit=3, progress=False, protocol="geco"),
        "more": evaluate("pf-willow", root, model="baseline", limit=4, progress=False),
    }
    for name, result in made.items():
        (folder / f"{name}.json").write_text(json.dumps(result))
    return folder


def test_results_file_names_everything_a_comparison_needs(files):
    result = json.loads((files / "a.json").read_text())
    assert (result["format"], result["version"], result["semcorr_version"]) == ("semcorr-result", 1, __version__)
    assert result["model"] == "baseline" and result["weights_digest"] is None  # no weights
    assert result["benchmark"] == "pf-willow" and result["split"] == "test"
    assert result["pairs_digest"].startswith("sha256:") and len(result["pairs_digest"]) == 7 + 64
    assert result["protocol"]["name"] == "semcorr" and result["protocol"]["comparison"] == "<="
    assert set(result["pck_per_keypoint"]) == set(result["pck_per_image"]) == {"0.05", "0.1", "0.15"}
    assert "car" in result["per_category"]


def test_same_protocol_side_by_side(cli, files):
    result = cli("compare", files / "a.json", files / "b.json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "PF-WILLOW test: 2 result(s)" and lines[1].startswith("protocol semcorr")
    header = next(line for line in lines if line.startswith("PCK@0.1"))
    assert header.split()[1:] == ["a", "b"]
    a, b = (json.loads((files / f"{n}.json").read_text()) for n in ("a", "b"))
    row = next(line for line in lines if line.startswith("all, per keypoint"))
    assert row.split()[-2:] == [f"{a['pck_per_keypoint']['0.1']:.1f}", f"{b['pck_per_keypoint']['0.1']:.1f}"]
    assert any(line.startswith("car ") for line in lines)


def test_columns_from_files_of_one_name_get_names_of_their_own(cli, files, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.json").write_text((files / "a.json").read_text())
    result = cli("compare", files / "a.json", tmp_path / "other" / "a.json", files / "a.json")
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("PCK@0.1"))
    assert header.split()[1:] == [f"{files.name}/a", "other/a", f"{files.name}/a#2"]


def one_line(result, *parts):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    for part in parts:
        assert part in lines[0], lines[0]


def test_other_protocol_or_pairs_refused_unless_mixed(cli, files):
    one_line(cli("compare", files / "a.json", files / "geco.json"), "geco", "other rules", "--allow-mixed")
    one_line(cli("compare", files / "a.json", files / "more.json"), "more", "another pair list", "--allow-mixed")
    mixed = cli("compare", files / "a.json", files / "geco.json", files / "more.json", "--allow-mixed")
    assert mixed.returncode == 0, mixed.stderr
    assert "mixed:" in mixed.stdout and "protocol geco" in mixed.stdout and "(4 pairs)" in mixed.stdout


def test_other_version_or_kind_refused_naming_the_file(cli, files, tmp_path):
    result = json.loads((files / "a.json").read_text())
    for name, content, words in (
        ("future.json", {**result, "version": 2}, ("future.json", "version 2", "reads version 1")),
        ("other.json", {"format": "semcorr-3d-pairs", "version": 1}, ("other.json", "not a semcorr results file")),
        ("bare.json", {"pck": {"0.1": 50.0}}, ("bare.json", "not a semcorr results file")),
        ("list.json", [1, 2], ("list.json", "not a semcorr results file")),
        ("broken.json", "{not json", ("broken.json", "not valid JSON")),
    ):
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        one_line(cli("compare", files / "a.json", path), *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bare.json",
        "broken.json",
        "future.json",
        "list.json",
        "other.json",
    ]  # nothing written


def test_a_models_file_gives_one_column_per_model(cli, tmp_path, one_thread):
    out = tmp_path / "both.json"
    run = cli(
        "eval",
        "pf-willow",
        "--data-root",
        data_path("pf-willow"),
        "--models",
        "baseline",
        "dinov2-s",
        "--random-weights",
        "--input-size",
        "112",
        "--limit",
        "2",
        "--quiet",
        "--out",
        out,
    )
    assert run.returncode == 0, run.stderr
    saved = json.loads(out.read_text())
    assert saved["format"] == "semcorr-result-set" and saved["results"][1]["weights_digest"] == "random"
    result = cli("compare", out)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("PCK@0.1"))
    assert header.split()[1:] == ["both:baseline", "both:dinov2-s"]


def test_transfer_shots_write_a_results_file(cli, tmp_path, one_thread):
    out = tmp_path / "k.json"
    run = cli(
        "eval",
        "pf-willow",
        "--data-root",
        data_path("pf-willow"),
        "--model",
        "baseline",
        "--limit",
        "20",
        "--transfer-shots",
        "2",
        "--quiet",
        "--out",
        out,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["format"] == "semcorr-result" and result["protocol"]["name"] == "semcorr-kshot"
    assert result["protocol"]["shots"] == 2 and result["protocol"]["window"] == 11 and result["pairs_digest"]
    assert cli("compare", out, out).returncode == 0


def test_a_k_shot_curve_gives_one_column_per_k(cli, tmp_path, one_thread):
    out = tmp_path / "curve.json"
    run = cli(
        "eval",
        "pf-willow",
        "--data-root",
        data_path("pf-willow"),
        "--model",
        "baseline",
        "--limit",
        "20",
        "--transfer-shots",
        "1",
        "2",
        "--quiet",
        "--out",
        out,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text())["format"] == "semcorr-result-curve"
    refused = cli("compare", out)  # 1 and 2 examples are different rules
    assert refused.returncode == 1 and "other rules" in refused.stderr
    result = cli("compare", out, "--allow-mixed")
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("PCK@0.1"))
    assert header.split()[1:] == ["curve:1-shot", "curve:2-shot"]


class TestDigests:
    def test_weights_digest_follows_the_weights(self):
        config = DinoV2Config(input_size=28)
        first = DinoV2Extractor(config, backbone=tiny_backbone(seed=0))
        again = DinoV2Extractor(config, backbone=tiny_backbone(seed=0))
        other = DinoV2Extractor(config, backbone=tiny_backbone(seed=1))
        digest = weights_digest(first)
        assert digest.startswith("sha256:") and digest == weights_digest(again) != weights_digest(other)
        with torch.no_grad():
            next(again.parameters()).view(-1)[0] += 1e-3
        assert weights_digest(again) != digest
        assert weights_digest(build_extractor("baseline")) is None
        assert weights_digest(DinoV2Extractor(config, backbone=tiny_backbone(), random_weights=True)) == "random"

    def test_pairs_digest_follows_the_pairs_not_their_folder(self, tmp_path):
        import dataclasses
        import shutil

        from semcorr.data import load_pf_willow

        pairs = load_pf_willow(data_path("pf-willow"))[:5]
        copy = tmp_path / "PF-dataset"
        shutil.copytree(data_path("pf-willow"), copy)
        assert pairs_digest(load_pf_willow(copy)[:5]) == pairs_digest(pairs)
        assert pairs_digest(pairs[:4]) != pairs_digest(pairs)
        moved = dataclasses.replace(pairs[0], target_points=pairs[0].target_points + 0.5)
        assert pairs_digest([moved, *pairs[1:]]) != pairs_digest(pairs)
