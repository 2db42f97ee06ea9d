"""Refinement (``semcorr finetune-3d``): the soft-argmax loss on known answers, learning on 3D pairs
generated from the real living-room frames, the supervised SPair path, the run folder, exact
resume after SIGKILL, two processes (gloo) and the command line.

The student is ``tiny_backbone()`` (width 32, 2 blocks) with LoRA, at small input sizes; one torch
thread (see ``conftest.one_thread``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import data_path
from helpers import launch_two_ranks, tiny_backbone
from safetensors.torch import load_file

from semcorr.cli import build_parser
from semcorr.errors import InputError
from semcorr.features.distill.student import StudentConfig, StudentExtractor, lora_parameters
from semcorr.threed import make_3d_pairs
from semcorr.train import FinetuneConfig, evaluate_refinement, finetune, open_point_pairs, refinement_loss, soft_argmax
from semcorr.train.refinement import refine_student

pytestmark = pytest.mark.usefixtures("one_thread")


def one_hot_features(height: int, width: int) -> torch.Tensor:
    """(1, h*w, h, w): every cell its own unit vector, so a cell's only match is itself."""
    return torch.eye(height * width).T.reshape(1, height * width, height, width)


class TestSoftArgmax:
    def test_single_peak_gives_its_cell(self):
        similarity = torch.zeros(1, 1, 5, 7)
        similarity[0, 0, 3, 2] = 1.0  # row 3, column 2
        torch.testing.assert_close(soft_argmax(similarity, 1000.0), torch.tensor([[[2.0, 3.0]]]))

    def test_flat_map_gives_the_centre_and_two_peaks_their_midpoint(self):
        flat = torch.full((2, 3, 5, 7), 0.4)
        torch.testing.assert_close(soft_argmax(flat), torch.tensor([3.0, 2.0]).expand(2, 3, 2))
        twin = torch.zeros(1, 1, 5, 7)
        twin[0, 0, 1, 1] = twin[0, 0, 3, 5] = 0.9
        torch.testing.assert_close(soft_argmax(twin), torch.tensor([[[3.0, 2.0]]]))

    def test_beta_softens(self):
        similarity = torch.tensor([[[[0.0, 0.01]]]])  # two cells, 0.01 apart
        weight = 1 / (1 + math.exp(-10.0))  # softmax weight of the second cell at beta 1000
        torch.testing.assert_close(soft_argmax(similarity, 1000.0)[..., 0], torch.tensor([[weight]]))
        torch.testing.assert_close(soft_argmax(similarity, 1.0)[..., 0], torch.tensor([[1 / (1 + math.exp(-0.01))]]))

    def test_wrong_input(self):
        with pytest.raises(ValueError, match=r"\(B, N, h, w\)"):
            soft_argmax(torch.zeros(3, 4, 4))
        with pytest.raises(ValueError, match="beta"):
            soft_argmax(torch.zeros(1, 1, 2, 2), 0.0)


class TestRefinementLoss:
    def test_exact_match_costs_nothing_and_a_wrong_target_its_distance(self):
        features = one_hot_features(4, 6)
        source = torch.tensor([[[1.0, 2.0], [5.0, 0.0]]])
        assert refinement_loss(features, features, source, source).item() == 0.0
        target = source + torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])  # the first is 5 cells off, the second exact
        assert refinement_loss(features, features, source, target).item() == pytest.approx(2.5)
        scale = torch.tensor([[2.0, 0.5]])  # units per cell along x and y: (3 * 2, 4 * 0.5) -> sqrt(40)
        assert refinement_loss(features, features, source, target, scale=scale).item() == pytest.approx(
            math.sqrt(40) / 2
        )

    def test_flat_target_predicts_the_centre(self):
        source = one_hot_features(3, 3)
        target = torch.ones(1, 9, 5, 5)  # every target cell alike: the soft-argmax is the grid's centre (2, 2)
        points, truth = torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[2.0, 5.0]]])
        assert refinement_loss(source, target, points, truth).item() == pytest.approx(3.0)

    def test_bilinear_source_between_two_cells_lands_between_them(self):
        features = one_hot_features(4, 4)
        between = torch.tensor([[[1.5, 2.0]]])  # halfway between cells (1, 2) and (2, 2): both match equally
        assert refinement_loss(features, features, between, between).item() == pytest.approx(0.0, abs=1e-5)

    def test_padding_rows_do_not_count_and_gradients_are_finite(self):
        features = one_hot_features(4, 6).requires_grad_(True)
        source = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[5.0, 3.0], [2.0, 2.0]]])
        target = source + torch.tensor([[[0.0, 2.0], [9.0, 9.0]], [[0.0, 0.0], [1.0, 0.0]]])
        batch = features.expand(2, -1, -1, -1)
        valid = torch.tensor([[True, False], [True, True]])
        loss = refinement_loss(batch, batch, source, target, valid=valid)
        assert loss.item() == pytest.approx((2.0 + 0.0 + 1.0) / 3)
        loss.backward()  # the exact match (distance 0) must not give NaN
        assert torch.isfinite(features.grad).all()

    def test_wrong_input(self):
        features = one_hot_features(2, 2)
        with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
            refinement_loss(features, features, torch.zeros(1, 3, 2), torch.zeros(1, 2, 2))
        with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
            refinement_loss(features[0], features, torch.zeros(1, 1, 2), torch.zeros(1, 1, 2))


@pytest.fixture(scope="module")
def living_room_pairs(tmp_path_factory) -> Path:
    """A pair file from the real living-room frames: frame 0 against 3 others, about 800 points each."""
    out = tmp_path_factory.mktemp("pairs") / "livingroom.h5"
    summary = make_3d_pairs(data_path("rgbd-livingroom"), out, progress=False)
    assert summary["pairs"] == 3 and summary["correspondences"] > 1500
    return out


def test_refinement_lowers_the_loss_on_generated_pairs(living_room_pairs, tmp_path):
    config = FinetuneConfig(
        pair_file=str(living_room_pairs), input_size=112, epochs=20, lr=1e-2, log_every=3, progress=False
    )
    pairs = open_point_pairs(config.pair_file)
    before = evaluate_refinement(refine_student(config, tiny_backbone()), pairs, beta=config.beta)
    result = finetune(config, tmp_path / "run", backbone=tiny_backbone())
    after = evaluate_refinement(result.student, pairs, beta=config.beta)
    assert after < 0.9 * before, (before, after)  # measured: 0.174 -> 0.143 (fraction of the image's side)
    # the written adapter is the trained one: merged for inference, it gives the same loss
    merged = StudentExtractor(StudentConfig(input_size=112, adapter=str(result.adapter)), backbone=tiny_backbone())
    assert evaluate_refinement(merged, pairs) == pytest.approx(after, rel=1e-4)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == result.global_step == 20 * 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["format"] == "semcorr-finetune-run"


def test_supervised_keypoint_pairs_through_the_benchmark_loader(tmp_path):
    root = data_path("spair-71k-mini")  # only its test split exists: the trn path is the same code
    pairs = open_point_pairs("spair", str(root), "test")
    assert len(pairs) == 12 and all(len(p.source_xy) == len(p.target_xy) > 0 for p in pairs)
    config = FinetuneConfig(
        benchmark="spair",
        data_root=str(root),
        split="test",
        input_size=56,
        epochs=1,
        pairs_per_step=4,
        points_per_pair=5,
        progress=False,
    )
    seen = []
    result = finetune(config, tmp_path / "run", backbone=tiny_backbone(), on_step=lambda step, loss: seen.append(loss))
    assert result.global_step == 3 and len(seen) == 3 and all(math.isfinite(v) and v > 0 for v in seen)
    assert any(t.abs().max() > 0 for name, t in result.student.lora_state().items() if "lora_B" in name)
    with pytest.raises(InputError, match="trn"):
        finetune(dataclasses.replace(config, split="trn"), tmp_path / "other", backbone=tiny_backbone())


def test_starting_adapter_run_folder_and_bad_input(living_room_pairs, tmp_path):
    torch.manual_seed(3)
    trained = StudentExtractor(StudentConfig(input_size=56), backbone=tiny_backbone())
    with torch.no_grad():
        for parameter in lora_parameters(trained.model).values():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    adapter = trained.save_adapter(tmp_path / "distilled")
    config = FinetuneConfig(
        pair_file=str(living_room_pairs), adapter=str(adapter), input_size=56, epochs=1, progress=False
    )
    start = refine_student(config, tiny_backbone())
    assert not start.merged and start.trainable_parameters()
    for name, value in trained.lora_state().items():
        torch.testing.assert_close(start.lora_state()[name], value)
    finetune(config, tmp_path / "run", backbone=tiny_backbone())
    with pytest.raises(InputError, match="another config.*beta"):
        finetune(dataclasses.replace(config, beta=500.0), tmp_path / "run", backbone=tiny_backbone())
    (tmp_path / "distill-run").mkdir()
    (tmp_path / "distill-run" / "config.json").write_text(json.dumps({"format": "semcorr-distill-run", "config": {}}))
    with pytest.raises(InputError, match="semcorr-distill-run folder"):
        finetune(config, tmp_path / "distill-run", backbone=tiny_backbone())
    with pytest.raises(InputError, match="neither a pair file"):
        open_point_pairs(str(tmp_path / "missing.h5"))
    with pytest.raises(InputError, match="--data-root"):
        open_point_pairs("spair")
    with pytest.raises(InputError, match="--jitter"):
        FinetuneConfig(benchmark="spair", jitter=-0.1)


def _resume_config(tmp_path: Path, pairs: Path, **overrides) -> Path:
    settings = dict(
        pair_file=str(pairs), input_size=56, epochs=4, lr=1e-3, checkpoint_every=2, log_every=1, progress=False
    )
    config = FinetuneConfig(**{**settings, **overrides})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dataclasses.asdict(config)))
    return path


class Crash(Exception):
    pass


def test_interrupted_run_resumes_exactly(living_room_pairs, tmp_path):
    """A run stopped after step 5 (checkpoint at step 4, a metrics line past it) and rerun ends with the
    uninterrupted run's weights and log. (SIGKILL and atomic files: the engine's, tested by test_distill.)"""
    config = FinetuneConfig(**json.loads(_resume_config(tmp_path, living_room_pairs).read_text()))
    reference = finetune(config, tmp_path / "reference", backbone=tiny_backbone())

    def crash(step: int, loss: float) -> None:
        if step == 5:
            raise Crash

    run = tmp_path / "run"
    with pytest.raises(Crash):
        finetune(config, run, backbone=tiny_backbone(), on_step=crash)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["global_step"] == 4
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 5
    resumed = finetune(config, run, backbone=tiny_backbone())
    assert resumed.global_step == reference.global_step == 12
    expected = load_file(str(reference.adapter / "adapter_model.safetensors"))
    actual = load_file(str(resumed.adapter / "adapter_model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert any(t.abs().max() > 0 for name, t in actual.items() if "lora_B" in name)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    reference_log = [json.loads(line) for line in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in reference_log], abs=1e-6)


def test_two_processes_refine_one_student(living_room_pairs, tmp_path):
    config_file = _resume_config(tmp_path, living_room_pairs, epochs=1)
    dump = tmp_path / "ranks"
    finished = launch_two_ranks(config_file, tmp_path / "run", "--finetune", "--dump", dump)
    assert finished.returncode == 0, finished.stderr[-3000:]
    ranks = [load_file(str(dump / f"rank{rank}.safetensors")) for rank in range(2)]
    adapter = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert torch.equal(ranks[0][name], adapter[name]), name
    assert any(tensor.abs().max() > 0 for name, tensor in adapter.items() if "lora_B" in name)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 1  # 3 pairs on 2 processes: 2 used, one step each


def test_command_line_options():
    args = build_parser().parse_args(
        [
            "finetune-3d",
            "--benchmark",
            "spair",
            "--data-root",
            "data",
            "--out",
            "run",
            "--beta",
            "500",
            "--jitter",
            "0",
            "--adapter",
            "d/adapter",
            "--no-progress",
        ]
    )
    config = FinetuneConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FinetuneConfig)})
    assert config == FinetuneConfig(
        benchmark="spair", data_root="data", beta=500.0, jitter=0.0, adapter="d/adapter", progress=False
    )
    assert (config.split, config.lr, config.points_per_pair) == ("trn", 1e-4, 512)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune-3d", "--out", "run"])  # --pair-file or --benchmark is required
