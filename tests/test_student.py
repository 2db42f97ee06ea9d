"""The LoRA student: parameter count, zero start, adapter round trip, merge, preset."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from helpers import tiny_backbone

from semcorr.errors import CheckpointError, InputError
from semcorr.features import build_extractor
from semcorr.features.backbones.dinov2 import DinoV2Config, DinoV2Extractor, hf_config
from semcorr.features.distill.student import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    NoAdapterWarning,
    StudentConfig,
    StudentExtractor,
    add_lora,
    lora_parameters,
)

SIZE = 56


def _student(seed: int = 0, **config) -> StudentExtractor:
    torch.manual_seed(seed)
    return StudentExtractor(StudentConfig(input_size=SIZE, **config), backbone=tiny_backbone())


def _randomise(student: StudentExtractor, seed: int = 1, scale: float = 0.5) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in lora_parameters(student.model).values():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


class TestLora:
    def test_full_size_trainable_parameters(self):
        from transformers import Dinov2WithRegistersModel

        with torch.device("meta"):
            model = Dinov2WithRegistersModel(hf_config(DinoV2Config(size="b", registers=True)))
        add_lora(model, rank=8, alpha=8, dropout=0.05)
        trainable = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
        assert sum(trainable.values()) == 294_912
        assert len(trainable) == 12 * 2 * 2  # blocks x (q, v) x (A, B)
        assert all(".q_proj.lora_" in name or ".v_proj.lora_" in name for name in trainable)

    def test_untrained_student_is_the_backbone(self):
        student = _student()
        assert all(torch.count_nonzero(p) == 0 for n, p in lora_parameters(student.model).items() if "lora_B" in n)
        assert all(p.requires_grad == (".lora_" in n) for n, p in student.model.named_parameters())
        plain = DinoV2Extractor(DinoV2Config(input_size=SIZE), backbone=tiny_backbone())
        pixels = torch.rand(2, 3, SIZE, SIZE)
        torch.testing.assert_close(student.eval()(pixels), plain(pixels), rtol=0, atol=0)

    def test_dropout_is_on_the_lora_input(self):
        layer = _student().model.encoder.layer[0].attention.q_proj
        assert layer.lora_dropout["default"].p == pytest.approx(0.05)
        assert layer.scaling["default"] == pytest.approx(1.0)

    def test_adapter_round_trip_is_exact(self, tmp_path):
        student = _student()
        _randomise(student)
        folder = student.save_adapter(tmp_path / "adapter")
        config = json.loads((folder / CONFIG_FILE).read_text())
        assert (config["rank"], config["alpha"], config["dropout"]) == (8, 8.0, 0.05)
        assert (folder / WEIGHTS_FILE).stat().st_size < 100_000  # the adapter alone, not the backbone
        loaded = _student(seed=5, adapter=str(folder), merge=False)
        for name, tensor in student.lora_state().items():
            assert torch.equal(loaded.lora_state()[name], tensor), name

    def test_merge_gives_the_same_features(self, tmp_path):
        student = _student().eval()
        _randomise(student)
        pixels = torch.rand(2, 3, SIZE, SIZE)
        with torch.no_grad():
            unmerged = student(pixels)
        student.save_adapter(tmp_path / "adapter")
        merged = _student(adapter=str(tmp_path / "adapter"))
        assert merged.merged and not lora_parameters(merged.model)
        with torch.no_grad():
            torch.testing.assert_close(merged(pixels), unmerged, rtol=0, atol=1e-5)
        plain = DinoV2Extractor(DinoV2Config(input_size=SIZE), backbone=tiny_backbone())
        assert (plain(pixels) - unmerged).abs().max() > 1e-2  # the adapter did change the features

    def test_refuses_foreign_adapters(self, tmp_path):
        student = _student(lora_rank=4, lora_alpha=4)
        student.save_adapter(tmp_path / "r4")
        other = _student()
        with pytest.raises(CheckpointError, match="rank 4"):
            other.load_adapter(tmp_path / "r4")
        with pytest.raises(InputError, match="not a student adapter"):
            _student(adapter=str(tmp_path / "missing"))
        state = dict(other.lora_state())
        state.pop(next(iter(state)))
        with pytest.raises(CheckpointError, match="missing"):
            other.load_lora_state(state)


@pytest.fixture
def tiny_small(monkeypatch):
    """Make the preset's ViT-S a tiny architecture (width 32, 2 blocks), built through the real path."""
    from semcorr.features.backbones import dinov2

    monkeypatch.setitem(dinov2.ARCHITECTURES, "s", (32, 2, 2, False))


@pytest.mark.usefixtures("tiny_small")
class TestPreset:
    def test_without_adapter_warns_and_drops_the_zero_lora(self):
        with pytest.warns(NoAdapterWarning, match="plain DINOv2 backbone"):
            torch.manual_seed(0)
            student = build_extractor("student", random_weights=True, size="s", input_size=SIZE, device="cpu")
        assert student.merged and not any("lora" in name for name, _ in student.named_parameters())
        torch.manual_seed(0)
        backbone = build_extractor("dinov2-s-reg", random_weights=True, input_size=SIZE, device="cpu")
        pixels = torch.rand(1, 3, SIZE, SIZE)
        with torch.no_grad():
            torch.testing.assert_close(student(pixels), backbone(pixels), rtol=0, atol=1e-5)

    def test_adapter_option_loads_and_merges(self, tmp_path):
        torch.manual_seed(0)
        trained = StudentExtractor(StudentConfig(size="s", input_size=SIZE), random_weights=True).eval()
        _randomise(trained, scale=0.05)
        trained.save_adapter(tmp_path / "adapter")
        pixels = torch.rand(1, 3, SIZE, SIZE)
        with torch.no_grad():
            expected = trained(pixels)
        with warnings.catch_warnings():
            warnings.simplefilter("error", NoAdapterWarning)
            torch.manual_seed(0)  # the same random backbone
            student = build_extractor(
                "student",
                random_weights=True,
                size="s",
                input_size=SIZE,
                adapter=str(tmp_path / "adapter"),
                device="cpu",
            )
        assert student.merged
        with torch.no_grad():
            torch.testing.assert_close(student(pixels), expected, rtol=0, atol=1e-4)

    def test_cli_has_the_adapter_option(self):
        from semcorr.cli import build_parser
        from semcorr.cli.options import extractor_overrides

        args = build_parser().parse_args(
            ["match", "a.png", "b.png", "--points", "1,1", "--model", "student", "--adapter", "run/adapter"]
        )
        assert extractor_overrides(args)["adapter"] == "run/adapter"
