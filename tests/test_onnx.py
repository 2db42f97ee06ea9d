"""ONNX export of the student at a tiny size: parity with PyTorch, fixed shape, opset, metadata,
atomic writes, the CLI end to end, and the error when onnxruntime is missing.

The full-size (434²) export is a benchmark (README), not a test.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_backbone

from semcorr.errors import ExportError, InputError
from semcorr.features import build_extractor
from semcorr.features.backbones.dinov2 import DinoV2Config, DinoV2Extractor
from semcorr.features.distill.student import StudentConfig, StudentExtractor, lora_parameters

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from semcorr.export import ONNX_OPSET, export_onnx  # noqa: E402  (after the skips above: it needs onnx)

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 56  # 4 x 4 cells of 14 px


def _student(seed: int = 1) -> StudentExtractor:
    """A tiny student (width 32, 2 blocks) whose LoRA is non-zero, so the adapter changes the features."""
    student = StudentExtractor(StudentConfig(input_size=SIZE), backbone=tiny_backbone()).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in lora_parameters(student.model).values():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return student


def _run(path, pixels: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["features"], {"pixels": pixels.numpy()})[0])


def _metadata(path) -> dict[str, str]:
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


class TestExportOnnx:
    def test_parity_fixed_shape_opset_and_metadata(self, tmp_path):
        student = _student()
        path = tmp_path / "student.onnx"
        report = export_onnx(student, path, size=SIZE, runs=1, warmup=0)
        assert report.max_abs_diff <= 1e-4 and report.tolerance == 1e-4
        assert (report.opset, report.input_size, report.grid, report.channels) == (ONNX_OPSET, SIZE, (4, 4), 32)
        assert report.lora_merged and report.onnxruntime_s_per_image > 0 and report.torch_s_per_image > 0
        assert not student.merged  # the export merged a copy

        pixels = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))  # not the check's pixels
        with torch.no_grad():
            expected = F.normalize(student(pixels), dim=1)
            plain = F.normalize(DinoV2Extractor(DinoV2Config(input_size=SIZE), backbone=tiny_backbone())(pixels), dim=1)
        actual = _run(path, pixels)
        assert actual.shape == (1, 32, 4, 4)
        torch.testing.assert_close(actual.norm(dim=1), torch.ones(1, 4, 4), rtol=0, atol=1e-5)  # L2-normalised
        assert (actual - expected).abs().max() <= 1e-4
        assert (actual - plain).abs().max() > 1e-2  # the LoRA is in the exported weights

        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        assert {o.domain: o.version for o in model.opset_import}[""] == ONNX_OPSET
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims == [1, 3, SIZE, SIZE]  # fixed input size, no symbolic dimensions
        meta = _metadata(path)
        assert meta["semcorr.model"] == "student" and meta["semcorr.input_size"] == str(SIZE)
        assert meta["semcorr.grid"] == "4x4" and meta["semcorr.opset"] == str(ONNX_OPSET)
        assert meta["semcorr.lora_merged"] == "True" and "ImageNet" in meta["semcorr.normalisation"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["student.onnx"]  # no temporary left

    def test_batch_of_images(self, tmp_path):
        images = [torch.rand(3, 70, 90), torch.rand(3, 40, 56)]  # resized onto the canvas, as extract() does
        student = _student()
        report = export_onnx(student, tmp_path / "b2.onnx", size=SIZE, batch_size=2, images=images, runs=0)
        assert report.max_abs_diff <= 1e-4 and report.onnxruntime_s_per_image is None
        pixels, _ = student.preprocess(images)
        actual = _run(tmp_path / "b2.onnx", pixels)
        torch.testing.assert_close(actual, student.extract(images).features, rtol=0, atol=1e-4)
        with pytest.raises(InputError, match="needs 2 image"):
            export_onnx(student, tmp_path / "x.onnx", size=SIZE, batch_size=2, images=images[:1])

    def test_failed_check_writes_nothing(self, tmp_path):
        (tmp_path / "old.onnx").write_bytes(b"previous")
        with pytest.raises(ExportError, match="differ by up to"):
            export_onnx(_student(), tmp_path / "old.onnx", size=SIZE, tolerance=1e-12, runs=0)
        assert (tmp_path / "old.onnx").read_bytes() == b"previous"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["old.onnx"]

    def test_weights_beside_the_graph_above_the_size_limit(self, tmp_path, monkeypatch):
        from semcorr.export import onnx as onnx_export

        monkeypatch.setattr(onnx_export, "_EXTERNAL_DATA_BYTES", 0)  # as for a model over protobuf's 2 GB
        report = export_onnx(_student(), tmp_path / "big.onnx", size=SIZE, runs=0)
        assert report.data_path == tmp_path / "big.onnx.data" and report.data_path.stat().st_size > 100_000
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
        assert _run(tmp_path / "big.onnx", torch.rand(1, 3, SIZE, SIZE)).shape == (1, 32, 4, 4)

    def test_refuses_bad_inputs(self, tmp_path):
        with pytest.raises(InputError, match="multiple of 14"):
            export_onnx(_student(), tmp_path / "s.onnx", size=50)
        with pytest.raises(InputError, match="supports the student"):
            export_onnx(build_extractor("baseline", device="cpu"), tmp_path / "b.onnx", size=SIZE)
        with pytest.raises(InputError, match="existing folder"):
            export_onnx(_student(), tmp_path / "missing" / "s.onnx", size=SIZE)


class TestCommand:
    def test_end_to_end_with_adapter(self, tmp_path, monkeypatch, capsys):
        from semcorr.cli import main
        from semcorr.features.backbones import dinov2

        monkeypatch.setitem(dinov2.ARCHITECTURES, "b", (32, 2, 2, False))  # the preset's ViT-B made tiny
        trained = StudentExtractor(StudentConfig(input_size=SIZE), random_weights=True)
        generator = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for parameter in lora_parameters(trained.model).values():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        adapter = trained.save_adapter(tmp_path / "adapter")
        out, report_file = tmp_path / "student.onnx", tmp_path / "report.json"
        code = main(
            [
                "export-onnx",
                "--model",
                "student",
                "--random-weights",
                "--adapter",
                str(adapter),
                "--size",
                str(SIZE),
                "--out",
                str(out),
                "--runs",
                "1",
                "--warmup",
                "0",
                "--json",
                str(report_file),
            ]
        )
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert f"opset {ONNX_OPSET}" in captured.out and "onnxruntime" in captured.out and "PyTorch" in captured.out
        assert "random weights" in captured.err
        report = json.loads(report_file.read_text())
        assert report["max_abs_diff"] <= 1e-4 and report["lora_merged"] and report["adapter"] == str(adapter)
        assert report["check_input"].endswith("motorcycle_left.png")  # a real image by default
        meta = _metadata(out)
        assert meta["semcorr.adapter"] == str(adapter) and meta["semcorr.random_weights"] == "True"

    def test_missing_onnxruntime_says_what_to_install(self, tmp_path, monkeypatch, capsys):
        from semcorr.cli import main

        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
        with pytest.raises(InputError, match=r"onnxruntime.*pip install 'semcorr\[onnx\]'"):
            export_onnx(_student(), tmp_path / "s.onnx", size=SIZE)
        assert main(["export-onnx", "--random-weights", "--out", str(tmp_path / "s.onnx")]) == 1
        assert "pip install 'semcorr[onnx]'" in capsys.readouterr().err
        assert not (tmp_path / "s.onnx").exists()
