"""Settings and configs check themselves when built: one line naming the option, the value, the field
and what is allowed, raised before any work; and the command line's help states their defaults."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import data_path

from semcorr.cli import build_parser
from semcorr.errors import InputError, SettingError
from semcorr.eval import PCKSettings
from semcorr.extract import ExtractSettings, RaySettings
from semcorr.features import (
    BaselineConfig,
    DinoV2Config,
    ExtractorConfig,
    SdxlTurboConfig,
    StudentConfig,
    TeacherConfig,
)
from semcorr.matching import MatchSettings
from semcorr.perf import BenchSettings
from semcorr.segment import SegmentSettings
from semcorr.train import DistillConfig, FinetuneConfig
from semcorr.transfer import TransferSettings, WarpSettings
from semcorr.video import TrackSettings


@pytest.fixture(scope="module")
def willow_pair():
    folder = data_path("pf-willow", "car(G)")
    return folder / "Cars_006a.png", folder / "Cars_007a.png"


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


class TestCommandLine:
    @pytest.mark.parametrize(
        "option,value,allowed",
        [
            ("--window", "10", "odd integer"),
            ("--grid", "-1", "in [1, 1024]"),
            ("--temperature", "0", "> 0"),
            ("--window", "0", ">= 1"),
        ],
    )
    def test_match_settings(self, cli, willow_pair, option, value, allowed):
        line = one_line(cli("match", *willow_pair, "--points", "10,10", "--model", "baseline", option, value))
        assert line.startswith(f"semcorr: error: {option} {value}") and allowed in line

    def test_segment_restarts(self, cli, willow_pair, tmp_path):
        line = one_line(
            cli("segment", willow_pair[0], "--out", tmp_path / "masks", "--model", "baseline", "--restarts", "0")
        )
        assert "--restarts 0" in line and ">= 1" in line
        assert not (tmp_path / "masks").exists()  # refused before any work

    @pytest.mark.parametrize(
        "option,value", [("--epochs", "0"), ("--lr", "-1"), ("--lora-dropout", "1.0"), ("--input-size", "100")]
    )
    def test_training_configs(self, cli, tmp_path, option, value):
        line = one_line(
            cli(
                "distill",
                "--images",
                tmp_path,
                "--teacher-cache",
                tmp_path / "cache",
                "--out",
                tmp_path / "run",
                option,
                value,
            )
        )
        assert f"{option} {value}" in line
        assert not (tmp_path / "run").exists()

    def test_video_and_eval_settings(self, cli, tmp_path):
        line = one_line(
            cli(
                "video",
                tmp_path / "clip.mp4",
                "--points",
                "1,1",
                "--tracks",
                tmp_path / "t.json",
                "--cycle-tolerance",
                "0",
            )
        )
        assert "--cycle-tolerance 0" in line
        line = one_line(cli("eval", "pf-willow", "--data-root", tmp_path, "--alpha", "0.1", "-0.1"))
        assert "--alpha" in line and "> 0" in line

    def test_extractor_input_size(self, cli, willow_pair):
        line = one_line(cli("match", *willow_pair, "--points", "10,10", "--model", "baseline", "--input-size", "0"))
        assert "--input-size 0" in line


class TestDataclasses:
    @pytest.mark.parametrize(
        "build,field",
        [
            (lambda: MatchSettings(window=4), "window"),
            (lambda: MatchSettings(method="argmax"), "method"),
            (lambda: MatchSettings(grid=0), "grid"),
            (lambda: TrackSettings(batch_size=0), "batch_size"),
            (lambda: TrackSettings(source_frame=-1), "source_frame"),
            (lambda: SegmentSettings(restarts=0), "restarts"),
            (lambda: SegmentSettings(refine_band=-1.0), "refine_band"),
            (lambda: PCKSettings(alphas=(0.1, 0.0)), "alphas"),
            (lambda: PCKSettings(average="pair"), "average"),
            (lambda: ExtractorConfig(input_size=0), "input_size"),
            (lambda: ExtractorConfig(resize_mode="crop"), "resize_mode"),
            (lambda: DinoV2Config(input_size=100), "input_size"),
            (lambda: DinoV2Config(size="xl"), "size"),
            (lambda: DinoV2Config(layer=13), "layer"),
            (lambda: BaselineConfig(cell_size=0), "cell_size"),
            (lambda: StudentConfig(lora_rank=0), "lora_rank"),
            (lambda: SdxlTurboConfig(timesteps=()), "timesteps"),
            (lambda: SdxlTurboConfig(time_ids=(1, 2, 3)), "time_ids"),
            (lambda: TeacherConfig(teacher_weights=(0.0, 0.0)), "teacher_weights"),
            (lambda: BenchSettings(repeats=0), "repeats"),
            (lambda: DistillConfig(images="x", epochs=0), "epochs"),
            (lambda: DistillConfig(images="x", lr=float("nan")), "lr"),
            (lambda: DistillConfig(images="x", teacher="teacher", teacher_cache="c"), "teacher"),
            (lambda: DistillConfig(), "images"),
            (lambda: FinetuneConfig(benchmark="spair"), "data_root"),
            (lambda: FinetuneConfig(benchmark="nowhere", data_root="d"), "benchmark"),
            (lambda: FinetuneConfig(), "pair_file"),
            (lambda: TransferSettings(min_confidence=1.5), "min_confidence"),
            (lambda: TransferSettings(on_error="ignore"), "on_error"),
            (lambda: WarpSettings(fill_below=-0.1), "fill_below"),
            (lambda: DistillConfig(images="x", on_missing="maybe"), "on_missing"),
            (lambda: ExtractSettings(batch_size=0), "batch_size"),
            (lambda: ExtractSettings(workers=-1), "workers"),
            (lambda: ExtractSettings(on_error="ignore"), "on_error"),
            (lambda: RaySettings(concurrency=0), "concurrency"),
            (lambda: RaySettings(num_gpus=-1), "num_gpus"),
        ],
    )
    def test_refused_with_field_value_and_rule(self, build, field):
        with pytest.raises(SettingError) as caught:
            build()
        error = caught.value
        assert error.field == field and isinstance(error, InputError)
        assert "\n" not in str(error) and field in str(error) and error.requirement in str(error)

    def test_defaults_are_valid(self):
        for settings in (
            MatchSettings(),
            TrackSettings(),
            SegmentSettings(),
            PCKSettings(),
            ExtractorConfig(),
            BaselineConfig(),
            DinoV2Config(),
            StudentConfig(),
            SdxlTurboConfig(),
            TeacherConfig(),
            BenchSettings(),
            DistillConfig(images="x"),
            FinetuneConfig(pair_file="p.h5"),
            TransferSettings(),
            WarpSettings(),
            ExtractSettings(),
            RaySettings(),
        ):
            assert dataclasses.replace(settings) == settings


def _help_default(parser, command: str, dest: str) -> str:
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    action = next(a for a in sub._actions if a.dest == dest)
    found = re.search(r"default:? ([^;)]+)", action.help)
    return found.group(1).strip()


@pytest.mark.parametrize(
    "command,settings,fields",
    [
        ("match", MatchSettings(), ("window", "temperature", "method")),
        ("video", TrackSettings(), ("batch_size", "cycle_tolerance", "source_frame")),
        ("segment", SegmentSettings(), ("restarts", "seed", "batch_size")),
        (
            "transfer",
            TransferSettings(),
            ("min_confidence", "cycle_tolerance", "agreement_tolerance", "batch_size", "on_error"),
        ),
        ("warp", WarpSettings(), ("cycle_tolerance", "fill_below")),
        ("extract", ExtractSettings(), ("batch_size", "on_error")),
        ("extract", RaySettings(), ("num_gpus", "concurrency", "cpus_per_actor")),
        ("cache-teacher", ExtractSettings(), ("batch_size", "on_error")),
    ],
)
def test_help_states_the_dataclass_defaults(command, settings, fields):
    """Options that fill a settings dataclass default to "not given"; their help repeats its defaults."""
    parser = build_parser()
    for field in fields:
        assert _help_default(parser, command, field) == str(getattr(settings, field)), field
    if command == "match":
        assert _help_default(parser, command, "grid") == str(settings.grid)
