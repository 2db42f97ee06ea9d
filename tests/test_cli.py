"""The ``semcorr`` command on real images: in-process (the ``cli`` fixture), and as a real process where
the process is what is tested (exit status, the traceback of ``--debug``, startup)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import data_path
from PIL import Image


def run_process(*args):
    """``python -m semcorr.cli ARGS`` as a real subprocess."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "semcorr.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def willow_pair():
    folder = data_path("pf-willow", "car(G)")
    return folder / "Cars_006a.png", folder / "Cars_007a.png"


class TestMatchCommand:
    def test_baseline_json_points_inside_image_b(self, cli, willow_pair, tmp_path):
        a, b = willow_pair
        result = cli(
            "match",
            str(a),
            str(b),
            "--model",
            "baseline",
            "--points",
            "50,60",
            "120.5,80",
            "10,10",
            "--show",
            str(tmp_path / "m.png"),
        )
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
        result = cli(
            "match",
            str(a),
            str(b),
            "--model",
            "baseline",
            "--points-file",
            str(tmp_path / "points.json"),
            "--out",
            str(tmp_path / "out.json"),
            "--resize-mode",
            "letterbox",
        )
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
    for name, protocol in (
        ("marco", "protocol marco"),
        ("diy-sc", "protocol diy-sc"),
        ("geco", "protocol geco"),
        ("distilldift-us", "protocol distilldift-paper"),
        ("dinov2-b-reg", "protocol distilldift-paper"),
    ):
        assert protocol in PRESETS[name].headline


def parse(*argv):
    """The namespace ``semcorr ARGV`` parses to, and the warnings parsing gave."""
    import warnings

    from semcorr.cli import build_parser

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = build_parser().parse_args([str(arg) for arg in argv])
    return args, [str(warning.message) for warning in caught]


def all_parsers():
    import argparse

    from semcorr.cli import build_parser

    found, todo = [], [build_parser()]
    while todo:
        parser = todo.pop()
        found.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


class TestArguments:
    def test_no_parser_takes_abbreviated_options(self, cli, willow_pair, tmp_path):
        parsers = all_parsers()
        assert len(parsers) > 20 and not [parser.prog for parser in parsers if parser.allow_abbrev]
        result = cli("match", *willow_pair, "--points", "10,10", "--mod", "baseline")
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == "semcorr: error: unrecognized arguments: --mod baseline (see `semcorr --help`)\n"
        # `--pairs` was taken for `--pairs-per-step` by prefix ("invalid int value"); it is the old --pair-file
        result = cli("finetune-3d", "--pairs", tmp_path / "p.h5", "--out", tmp_path / "run", "--random-weights")
        assert result.returncode == 1 and result.stderr.splitlines() == [
            "semcorr: warning: --pairs is now --pair-file; the old spelling works until semcorr 0.3.0",
            f"semcorr: error: --pair-file {tmp_path / 'p.h5'}: not found",
        ]
        assert not (tmp_path / "run").exists()

    def test_renamed_options_keep_their_old_spelling(self, tmp_path):
        listing = tmp_path / "pairs.txt"
        cases = [
            (
                ("finetune-3d", "--out", "run", "--pairs", "p.h5"),
                {"pair_file": "p.h5", "benchmark": None},
                "--pairs is now --pair-file",
            ),
            (
                ("finetune-3d", "--out", "run", "--pairs", "spair", "--data-root", "S"),
                {"pair_file": None, "benchmark": "spair", "data_root": "S"},
                "--pairs spair is now --benchmark spair",
            ),
            (
                ("distill", "--out", "run", "--images", "i", "--pairs", listing),
                {"pair_list": str(listing)},
                "--pairs is now --pair-list",
            ),
            (
                ("distill", "--out", "run", "--pairs", tmp_path),
                {"pair_list": None, "benchmark": "spair", "data_root": str(tmp_path), "split": "trn"},
                f"--pairs {tmp_path} is now --benchmark spair --data-root {tmp_path}",
            ),
        ]
        for argv, expected, warning in cases:
            args, warned = parse(*argv)
            assert {name: getattr(args, name) for name in expected} == expected, argv
            assert warned == [f"{warning}; the old spelling works until semcorr 0.3.0"], argv
        _, warned = parse("finetune-3d", "--out", "run", "--pairs", "a.h5", "--pairs", "b.h5")
        assert len(warned) == 1  # once per run

    def test_the_renamed_options_table(self, cli):
        from semcorr.cli.options import RENAMED_OPTIONS

        assert {(entry.command, entry.old) for entry in RENAMED_OPTIONS} == {
            ("distill", "--pairs"),
            ("finetune-3d", "--pairs"),
        }
        for entry in RENAMED_OPTIONS:
            shown = cli(entry.command, "--help").stdout
            assert entry.new.split()[0] in shown and f"{entry.old} " not in shown, entry  # hidden from the help

    def test_negative_numbers_are_values_not_options(self):
        args, _ = parse("match", "a.png", "b.png", "--points", "-5,10", "-.5,3", "--temperature", "-1e-3")
        assert args.points == ["-5,10", "-.5,3"] and args.temperature == -1e-3
        args, _ = parse("finetune-3d", "--out", "run", "--pair-file", "p.h5", "--lr", "-.1")
        assert args.lr == -0.1

    def test_image_paths_may_follow_the_points(self):
        args, _ = parse("match", "--points", "1,2", "-3,4", "a.png", "b.png", "--model", "baseline")
        assert (args.image_a, args.image_b, args.points, args.model) == ("a.png", "b.png", ["1,2", "-3,4"], "baseline")
        args, _ = parse("match", "a.png", "--points", "1,2", "b.png")
        assert (args.image_a, args.image_b, args.points) == ("a.png", "b.png", ["1,2"])
        args, _ = parse("match", "--points", "1,2", "--points", "3,4", "dir/a", "dir/b")
        assert (args.image_a, args.image_b, args.points) == ("dir/a", "dir/b", ["1,2", "3,4"])
        args, _ = parse("video", "--points", "1,2", "clip.mp4", "--tracks", "t.json")
        assert (args.video, args.points) == ("clip.mp4", ["1,2"])
        assert not hasattr(args, "images_after_points")

    def test_every_image_and_video_suffix_ends_the_points(self):
        from semcorr.cli.parser import FILE_SUFFIXES  # the parser's copy, kept free of torch and PyAV
        from semcorr.images import IMAGE_SUFFIXES
        from semcorr.video.io import VIDEO_FORMATS

        assert IMAGE_SUFFIXES | set(VIDEO_FORMATS) <= FILE_SUFFIXES

    @pytest.mark.parametrize(
        "argv, message",
        [
            (
                ("match", "--points", "1,2", "a.png"),
                "semcorr match: error: the following arguments are required: image_b",
            ),
            (
                ("match", "a.png", "b.png", "--points"),
                "semcorr match: error: argument --points: expected at least one argument",
            ),
            (
                ("match", "a.png", "b.png", "--points", "c.png"),
                "semcorr match: error: argument --points: expected at least one argument",
            ),
            (("match", "--points", "1,2", "a.png", "b.png", "c.png"), "semcorr: error: unrecognized arguments: c.png"),
        ],
    )
    def test_points_errors(self, cli, argv, message):
        result = cli(*argv)
        help_of = message.split(": error")[0]
        assert (result.returncode, result.stderr) == (2, f"{message} (see `{help_of} --help`)\n")


def test_the_parser_rules_hold_on_every_python_found():
    """tests/parser_rules.py needs only the standard library: it runs on this Python and on any other
    python3.10 ... python3.13 on the PATH (Python 3.13 changed argparse's negative-number rule)."""
    import shutil
    from pathlib import Path

    script = Path(__file__).with_name("parser_rules.py")
    found = {shutil.which(name) for name in ("python3.10", "python3.11", "python3.12", "python3.13")}
    runs = {
        python for python in found if python and subprocess.run([python, "-c", ""], capture_output=True).returncode == 0
    }
    for python in sorted(runs | {sys.executable}):
        result = subprocess.run([python, str(script)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "parser rules hold" in result.stdout, (python, result.stderr[-2000:])
