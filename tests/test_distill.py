"""Distillation runs: learning, the run folder, exact resume after SIGKILL, two processes (gloo).

Tiny sizes everywhere: the student is ``tiny_backbone()`` (width 32, 2 blocks) with LoRA; the
teacher is the same backbone with a known random LoRA change, so the student can match it.
One torch thread: on this loaded 2-core machine it is several times faster than two.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, data_path
from helpers import TRAIN_WORKER, launch_two_ranks, tiny_backbone
from safetensors.torch import load_file

from semcorr.errors import InputError
from semcorr.extract import ExtractSettings, extract_features
from semcorr.features.distill.student import StudentConfig, StudentExtractor, lora_parameters
from semcorr.geometry import ImageGeometry
from semcorr.store import FeatureFolder
from semcorr.train import DistillConfig, distill
from semcorr.train.losses import similarity

pytestmark = pytest.mark.usefixtures("one_thread")


def willow_images() -> tuple[list[Path], list[Path]]:
    """PF-WILLOW: the first 8 images of each of the 10 subclasses to train, the last 2 held out."""
    root = data_path("pf-willow")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    train = [p for f in folders for p in sorted(f.glob("*.png"))[:8]]
    held = [p for f in folders for p in sorted(f.glob("*.png"))[8:]]
    return train, held


def learning_images() -> tuple[list[Path], list[Path]]:
    """Training and held-out images for the learning test, all real: PF-WILLOW (train: 8 per
    subclass, held out: 2 per subclass) and the living-room frames (train: even, held out: odd),
    plus the SPair-71k mini images, held out only (a dataset the student never saw)."""
    train, held = willow_images()
    room = sorted(data_path("rgbd-livingroom").glob("rgb/*.jpg"))
    spair = sorted(data_path("spair-71k-mini").rglob("JPEGImages/*/*.jpg"))
    held_spair = spair[: len(spair) // 2 * 2]
    return train + room[0::2], held + room[1::2][:20] + held_spair


def make_teacher(size: int, seed: int = 0, scale: float = 1.0) -> StudentExtractor:
    """The student's backbone plus a known random LoRA change (random B; A as the student's init)."""
    backbone = tiny_backbone()
    torch.manual_seed(seed)  # distill() seeds the student's LoRA init with config.seed the same way
    teacher = StudentExtractor(StudentConfig(input_size=size), backbone=backbone)
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, parameter in lora_parameters(teacher.model).items():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return teacher.merge().eval()


def write_list(path: Path, images: list[Path]) -> Path:
    path.write_text("".join(f"{image.resolve()}\n" for image in images))
    return path


def nn_agreement(student, teacher, images: list[Path]) -> float:
    """Share of source patches whose nearest target patch is the same for student and teacher, over
    all patches of the pairs (images[0], images[1]), (images[2], images[3]), ..."""

    def similarities(extractor):
        features = extractor.extract(images).features
        return similarity(features[0::2], features[1::2])

    return (similarities(student).argmax(-1) == similarities(teacher).argmax(-1)).float().mean().item()


def fill_cache(root: Path, teacher, images: list[Path], keys: list[str]) -> Path:
    cache = FeatureFolder.create(root, {"model": "test-teacher", "grid": list(teacher.grid_size())})
    features = teacher.extract(images).features
    for key, feature in zip(keys, features):
        cache.put(key, feature, ImageGeometry.fit((200, 300), 56))
    return root


def test_distillation_learns_the_teacher(tmp_path):
    """140 px (10 x 10 patches): at 84 px (6 x 6) a white-background bottle leaves so few
    distinct patches that the teacher's own nearest neighbours are near-ties."""
    size, epochs = 140, 10
    train, held = learning_images()
    teacher = make_teacher(size)
    plain = StudentExtractor(StudentConfig(input_size=size), backbone=tiny_backbone()).eval()
    before = nn_agreement(plain, teacher, held)
    config = DistillConfig(
        images=str(write_list(tmp_path / "train.txt", train)),
        input_size=size,
        epochs=epochs,
        lr=1e-2,
        lr_decay_epoch=epochs - 1,
        neighbours=3,
        progress=False,
    )
    result = distill(config, tmp_path / "run", backbone=tiny_backbone(), teacher=teacher)
    student = StudentExtractor(StudentConfig(input_size=size, adapter=str(result.adapter)), backbone=tiny_backbone())
    after = nn_agreement(student.eval(), teacher, held)
    assert after >= 0.9 and after >= before + 0.1, (before, after)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == result.global_step == epochs * len(train)
    assert log[-1]["loss"] < log[0]["loss"]
    assert log[0]["lr"] == 1e-2 and log[-1]["lr"] == pytest.approx(1e-3)


def _cached_setup(tmp_path: Path, images: int = 8, **overrides) -> tuple[DistillConfig, Path]:
    train, _ = willow_images()
    train = train[::10][:images]
    listing = write_list(tmp_path / "train.txt", train)
    cache = fill_cache(tmp_path / "cache", make_teacher(56), train, [str(p.resolve()) for p in train])
    settings = dict(
        images=str(listing),
        teacher_cache=str(cache),
        input_size=56,
        epochs=2,
        lr=1e-3,
        lr_decay_epoch=1,
        neighbours=3,
        checkpoint_every=2,
        log_every=1,
        progress=False,
    )
    config = DistillConfig(**{**settings, **overrides})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dataclasses.asdict(config)))
    return config, path


def test_run_folder_and_config_refusal(tmp_path):
    config, _ = _cached_setup(tmp_path, images=6, epochs=1)
    result = distill(config, tmp_path / "run", backbone=tiny_backbone())
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["config"]["lr"] == 1e-3
    assert (run / "checkpoint.pt").is_file() and (run / "pairing" / "embeddings.safetensors").is_file()
    assert (result.adapter / "adapter_model.safetensors").is_file()
    again = distill(dataclasses.replace(config, log_every=3), run, backbone=tiny_backbone())  # finished: no steps
    assert again.global_step == result.global_step
    with pytest.raises(InputError, match="another config.*lr"):
        distill(dataclasses.replace(config, lr=5e-4), run, backbone=tiny_backbone())
    with pytest.raises(InputError, match="no teacher features"):
        distill(
            dataclasses.replace(config, images=str(write_list(tmp_path / "x.txt", willow_images()[1][:4]))),
            tmp_path / "run2",
            backbone=tiny_backbone(),
        )


def test_a_cache_that_skipped_an_unreadable_image(tmp_path, capsys):
    """cache-teacher skips a corrupt image; distill stops before training, or with --on-missing skip
    trains without it, naming it. A truncated entry counts as missing too."""
    train = willow_images()[0][::10][:5]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    listing = write_list(tmp_path / "train.txt", train + [corrupt])
    cache = tmp_path / "cache"
    report = extract_features(
        listing, cache, model=make_teacher(56), settings=ExtractSettings(embeddings=False, workers=0), progress=False
    )
    assert report.written == 5 and [where for _, where, _ in report.failed] == [str(corrupt.resolve())]
    config = DistillConfig(
        images=str(listing), teacher_cache=str(cache), input_size=56, epochs=1, neighbours=2, progress=False
    )
    with pytest.raises(
        InputError,
        match=r"no teacher features for 1 of 6 images, e.g. '.*corrupt.png'.*"
        r"--on-missing skip",
    ):
        distill(config, tmp_path / "run", backbone=tiny_backbone())
    entry = FeatureFolder(cache).path(str(train[0].resolve()))
    entry.write_bytes(entry.read_bytes()[:-100])  # a torn write: no longer a whole entry
    result = distill(dataclasses.replace(config, on_missing="skip"), tmp_path / "run", backbone=tiny_backbone())
    error = capsys.readouterr().err
    assert "skipping 2 of 6 images the teacher cache" in error and "corrupt.png" in error and train[0].name in error
    assert result.global_step == 4  # one pair per image and epoch, over the 4 images the cache holds


def test_killed_run_resumes_exactly(tmp_path):
    config, config_file = _cached_setup(tmp_path)
    reference = distill(config, tmp_path / "reference", backbone=tiny_backbone())
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(TRAIN_WORKER), str(config_file), str(run), "--delay", "0.25"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        log = run / "metrics.jsonl"
        if (run / "checkpoint.pt").is_file() and log.is_file() and len(log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[0].decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    steps_done = torch.load(run / "checkpoint.pt", weights_only=True)["global_step"]
    assert 0 < steps_done < reference.global_step
    finished = subprocess.run(
        [sys.executable, str(TRAIN_WORKER), str(config_file), str(run)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    expected = load_file(str(reference.adapter / "adapter_model.safetensors"))
    resumed = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert any(tensor.abs().max() > 0 for name, tensor in resumed.items() if "lora_B" in name)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, reference.global_step + 1))  # the log too: no step twice, none missing


def test_two_processes_train_one_student(tmp_path):
    _, config_file = _cached_setup(tmp_path, epochs=1)
    dump = tmp_path / "ranks"
    finished = launch_two_ranks(config_file, tmp_path / "run", "--dump", dump)
    assert finished.returncode == 0, finished.stderr[-3000:]
    ranks = [load_file(str(dump / f"rank{rank}.safetensors")) for rank in range(2)]
    adapter = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert torch.equal(ranks[0][name], adapter[name]), name
    assert any(tensor.abs().max() > 0 for name, tensor in adapter.items() if "lora_B" in name)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4  # 8 pairs shared by 2 processes: 4 steps each
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["world_size"] == 2
