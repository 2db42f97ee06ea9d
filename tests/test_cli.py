"""The ``semcorr`` command on real images: in-process (the ``cli`` fixture), and as a real process where
the process is what is tested (exit status, the traceback of ``--debug``, startup)."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import data_path


def run_process(*args):
    """``python -m semcorr.cli ARGS`` as a real subprocess."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "semcorr.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def willow_pair():
    folder = data_path("pf-willow", "car(G)")
    return folder / "Cars_006a.png", folder / "Cars_007a.png"


class TestMatchCommand:
    def test_baseline_json_points_inside_image_b(self, cli, willow_pair, tmp_path):
        a, b = willow_pair
        result = cli("match", str(a), str(b), "--model", "baseline", "--points", "50,60", "120.5,80", "10,10",
                     "--show", str(tmp_path / "m.png"))
        assert result.returncode == 0, result.stderr
        output = json.loads(result.stdout)
        width, height = Image.open(b).size
        assert len(output["matches"]) == 3 and output["model"] == "baseline" and not output["random_weights"]
        assert output["matches"][1]["source"] == [120.5, 80.0]
        for match in output["matches"]:
            x, y = match["target"]
            assert 0 <= x <= width and 0 <= y <= height and -1 <= match["score"] <= 1
        assert output["image_b"] == {"name": str(b), "width": width, "height": height}
        picture = Image.open(tmp_path / "m.png")
        assert picture.size[0] >= Image.open(a).size[0] + width - 2

    def test_points_file_and_out(self, cli, willow_pair, tmp_path):
        a, b = willow_pair
        (tmp_path / "points.json").write_text(json.dumps({"points": [[30, 40], [70, 90]]}))
        result = cli("match", str(a), str(b), "--model", "baseline", "--points-file", str(tmp_path / "points.json"),
                     "--out", str(tmp_path / "out.json"), "--resize-mode", "letterbox")
        assert result.returncode == 0, result.stderr
        output = json.loads((tmp_path / "out.json").read_text())
        assert [m["source"] for m in output["matches"]] == [[30.0, 40.0], [70.0, 90.0]]
        assert output["settings"]["extractor"]["resize_mode"] == "letterbox"

    def test_corrupt_file_one_line_naming_it(self, willow_pair, tmp_path):
        broken = tmp_path / "broken.png"
        broken.write_bytes(willow_pair[0].read_bytes()[:300])
        result = run_process("match", str(willow_pair[0]), str(broken), "--model", "baseline", "--points", "10,10")
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "broken.png" in lines[0] and "Traceback" not in result.stderr

    def test_point_outside_image_one_line_naming_it(self, cli, willow_pair):
        width, height = Image.open(willow_pair[0]).size
        result = cli("match", *map(str, willow_pair), "--model", "baseline", "--points", "10,10", f"{width + 5},3")
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "point 1" in lines[0] and "image A" in lines[0]

    def test_malformed_points(self, cli, willow_pair):
        result = cli("match", *map(str, willow_pair), "--model", "baseline", "--points", "10;10")
        assert result.returncode != 0 and "'10;10' is not an x,y pair" in result.stderr

    def test_debug_shows_traceback(self, willow_pair):
        result = run_process("--debug", "match", *map(str, willow_pair), "--model", "baseline", "--points", "nan,3")
        assert result.returncode != 0 and "Traceback" in result.stderr and "not a finite number" in result.stderr

    def test_missing_weights_is_one_line_and_never_falls_back(self, cli, willow_pair):
        result = cli("match", *map(str, willow_pair), "--points", "10,10")
        assert result.returncode != 0 and result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "distilldift_us.ckpt" in lines[0] and "--weights" in lines[0]  # the default model

    def test_random_weights_are_announced(self, cli, willow_pair):
        result = cli("match", *map(str, willow_pair), "--model", "dinov2-s", "--random-weights", "--points", "10,10")
        assert result.returncode == 0, result.stderr
        output = json.loads(result.stdout)
        assert output["random_weights"] and "random weights" in output["warning"]
        assert "random weights" in result.stderr

    def test_unknown_model(self, cli, willow_pair):
        result = cli("match", *map(str, willow_pair), "--model", "dinov9", "--points", "10,10")
        assert result.returncode != 0 and "unknown model 'dinov9'" in result.stderr and "baseline" in result.stderr


class TestDemoAndModels:
    def test_demo_falls_back_to_baseline_offline(self, cli, tmp_path):
        result = cli("demo", "--out-dir", str(tmp_path / "demo"))
        assert result.returncode == 0, result.stderr
        assert "distilldift-us: weights are not in the cache" in result.stdout and "'baseline'" in result.stdout
        output = json.loads((tmp_path / "demo" / "matches.json").read_text())
        assert output["model"] == "baseline" and len(output["matches"]) == 8
        assert (tmp_path / "demo" / "matches.png").stat().st_size > 10_000

    def test_models_lists_presets(self, cli):
        result = cli("models")
        assert result.returncode == 0 and "baseline" in result.stdout and "dinov2-b-reg" in result.stdout


def test_models_lists_source_licence_and_headline_of_every_preset(cli):
    from semcorr.features.registry import PRESETS

    result = cli("models")
    assert result.returncode == 0, result.stderr
    for name, preset in PRESETS.items():
        assert preset.description and preset.source and preset.licence and preset.headline, name
        assert f"{name}  " in result.stdout and preset.headline in result.stdout
    assert "non-commercial" in PRESETS["sdxl-turbo"].licence and "none stated" in PRESETS["geco"].licence
    for name, protocol in (("marco", "protocol marco"), ("diy-sc", "protocol diy-sc"), ("geco", "protocol geco"),
                           ("distilldift-us", "protocol distilldift-paper"), ("dinov2-b-reg", "protocol distilldift-paper")):
        assert protocol in PRESETS[name].headline
