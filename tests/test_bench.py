"""`semcorr bench` on two tiny models, and the fast path's building blocks."""

import json

import pytest
import torch
from helpers import tiny_backbone

from semcorr.errors import InputError
from semcorr.features import PRESETS, DinoV2Config, DinoV2Extractor, build_extractor
from semcorr.perf import BenchSettings, default_reference, format_speed_table, measure, run_bench
from semcorr.runtime import fast_precision, native_bf16

ROW_FIELDS = {
    "model",
    "input_size",
    "batch_size",
    "precision",
    "compile",
    "device",
    "random_weights",
    "params",
    "weights_mb",
    "latency_ms",
    "latency_ms_min",
    "latency_ms_max",
    "images_per_s",
    "peak_memory_mb",
    "grid",
    "channels",
    "first_call_s",
    "build_s",
    "reference_row",
    "ratio_to_reference",
}


class TestBenchCommand:
    def test_two_tiny_models_write_every_field(self, cli, tmp_path):
        out = tmp_path / "bench.json"
        result = cli(
            "bench",
            "--models",
            "baseline",
            "dinov2-s",
            "--sizes",
            "56",
            "--batch-sizes",
            "1",
            "2",
            "--random-weights",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--reference",
            "baseline",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--quiet",
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(out.read_text())
        assert {"rows", "reference", "machine", "settings", "notes"} <= set(data)
        assert len(data["rows"]) == 4 and data["reference"] == "baseline"
        for row in data["rows"]:
            assert set(row) == ROW_FIELDS
            assert row["images_per_s"] > 0 and row["latency_ms_min"] <= row["latency_ms"] <= row["latency_ms_max"]
            assert row["input_size"] == 56 and row["grid"] == [4, 4] and row["device"] == "cpu"
        baseline, dino = (r for r in data["rows"] if r["batch_size"] == 2)
        assert baseline["ratio_to_reference"] == 1.0 and baseline["params"] == 0 and baseline["channels"] == 128
        assert dino["params"] == 22_056_576 and dino["channels"] == 384 and dino["random_weights"]
        assert dino["peak_memory_mb"] >= dino["weights_mb"] > 80
        assert data["machine"]["threads"] == 1 and "load_average" in data["machine"]
        assert "random weights" in data["notes"]["weights"] and "RSS" in data["notes"]["memory"]
        assert "dinov2-s (random)" in result.stdout and "x ref" in result.stdout

    def test_unknown_model_is_one_line(self, cli):
        result = cli("bench", "--models", "nonsense", "--quiet")
        assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
        assert "unknown model 'nonsense'" in result.stderr


class TestBenchAPI:
    def test_reference_is_added_and_ratios_follow_throughput(self):
        result = run_bench(
            BenchSettings(
                models=("dinov2-s",),
                input_sizes=(28,),
                batch_sizes=(1,),
                repeats=1,
                warmup=1,
                random_weights=True,
                reference="baseline",
                device="cpu",
                interleave=True,
            ),
            progress=False,
        )
        baseline, dino = result["rows"]
        assert (baseline["model"], dino["model"]) == ("baseline", "dinov2-s")
        assert dino["ratio_to_reference"] == pytest.approx(dino["images_per_s"] / baseline["images_per_s"], rel=1e-2)
        assert "baseline" in format_speed_table(result) and "round-robin" in result["notes"]["timing"]

    def test_default_reference_is_the_student_or_its_cost(self):
        assert default_reference() == ("student" if "student" in PRESETS else "dinov2-b-reg")

    def test_adapter_goes_only_to_models_that_take_one(self):
        from semcorr.perf.extraction import _extra

        settings = BenchSettings(adapter="run/adapter")
        assert _extra("dinov2-b-reg", settings) == {} and _extra("baseline", settings) == {}
        if "student" in PRESETS:
            assert _extra("student", settings) == {"adapter": "run/adapter"}

    def test_measure_checks_its_arguments(self):
        with pytest.raises(InputError, match="repeats"):
            measure(build_extractor("baseline", input_size=28), 1, repeats=0)
        with pytest.raises(InputError, match="batch size"):
            measure(build_extractor("baseline", input_size=28), 0)


class TestFastPath:
    def test_dinov2_runs_pytorch_fused_attention(self, monkeypatch):
        calls = []
        original = torch.nn.functional.scaled_dot_product_attention

        def counting(*args, **kwargs):
            calls.append(args[0].shape)
            return original(*args, **kwargs)

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
        extractor = build_extractor("dinov2-s", random_weights=True, input_size=28, device="cpu", layer=2)
        extractor.extract(torch.rand(3, 30, 30))
        assert len(calls) == 2 and calls[0] == (1, 6, 1 + 4, 64)  # batch, heads, class + 2x2 patch tokens, head dim

    def test_bf16_autocast_features_agree_with_fp32(self):
        backbone = tiny_backbone()
        images = [torch.rand(3, 70, 70) for _ in range(2)]
        fp32 = DinoV2Extractor(DinoV2Config(input_size=70), backbone=backbone).extract(images).features
        bf16 = (
            DinoV2Extractor(DinoV2Config(input_size=70, precision="bf16"), backbone=backbone).extract(images).features
        )
        assert bf16.dtype == torch.float32
        assert (fp32 * bf16).sum(dim=1).min() > 0.99  # cosine similarity per cell

    def test_fast_precision_follows_the_hardware(self):
        assert fast_precision("cpu") == ("bf16" if native_bf16("cpu") else "fp32")
        assert native_bf16("meta") is False
