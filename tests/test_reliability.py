"""Hostile input, as a new user would give it: every case ends in one line naming the culprit (exit 1,
no traceback) or in a correct result, never in a traceback, a NaN or a half-written or lost file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO, data_path
from helpers import tiny_backbone
from PIL import Image

from semcorr.errors import CheckpointError, InputError, TrainingError
from semcorr.features.distill.student import StudentConfig, StudentExtractor, lora_parameters
from semcorr.fileio import HOST
from semcorr.train import DistillConfig, distill

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    folder = data_path("pf-willow", "car(G)")
    return folder / "Cars_006a.png", folder / "Cars_007a.png"


def one_line(result, *culprits: str) -> str:
    """The single error line of a failed run, which must name every culprit."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for culprit in culprits:
        assert str(culprit) in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class TestOutputsCheckedFirst:
    """Each refused before a model is loaded: --model distilldift-us has no weights here, so a run that
    got as far as loading a model would fail on the weights instead."""

    def test_match_outputs(self, cli, images, tmp_path, read_only):
        common = ("match", *images, "--points", "10,10")
        cases = [
            (("--out", tmp_path), "is a folder"),
            (("--out", tmp_path / "missing" / "m.json"), "does not exist"),
            (("--out", tmp_path / "m.txt"), "must be a .json file"),
            (("--show", tmp_path / "m.txt"), "must be a .png file"),
            (("--show", tmp_path / "missing" / "m.png"), "does not exist"),
            (("--out", read_only / "m.json"), "not writable"),
        ]
        for extra, message in cases:
            one_line(cli(*common, *extra), message)

    def test_eval_outputs_before_the_evaluation(self, cli, tmp_path):
        root = data_path("pf-willow")
        for option in ("--out", "--save-predictions"):
            one_line(cli("eval", "pf-willow", "--data-root", root, option, tmp_path), tmp_path, "is a folder")

    def test_video_outputs(self, cli, tmp_path, read_only):
        clip = tmp_path / "clip.mp4"
        one_line(cli("video", clip, "--points", "1,1", "--tracks", tmp_path / "t.xlsx"), "t.xlsx", ".json or .csv")
        one_line(cli("video", clip, "--points", "1,1", "--out", read_only / "o.mp4"), "not writable")
        one_line(cli("video", clip, "--points", "1,1", "--out", tmp_path / "o.gif"), "o.gif", ".mp4")

    def test_export_and_folders(self, cli, images, tmp_path, read_only):
        one_line(cli("export-onnx", "--random-weights", "--out", read_only / "s.onnx"), "not writable")
        one_line(cli("export-onnx", "--random-weights", "--out", tmp_path / "s.pt"), "must be a .onnx file")
        listing = tmp_path / "list.txt"
        listing.write_text(f"{images[0]}\n")
        one_line(cli("cache-teacher", listing, "--out", read_only / "cache", "--model", "baseline"), "not writable")
        one_line(
            cli("distill", "--images", listing, "--teacher-cache", tmp_path, "--out", read_only / "run"), "not writable"
        )
        one_line(cli("make-3d-pairs", data_path("rgbd-livingroom"), "--out", read_only / "p.h5"), "not writable")
        one_line(cli("segment", images[0], "--out", read_only / "masks", "--model", "baseline"), "not writable")
        one_line(cli("demo", "--out-dir", read_only / "demo"), "not writable")

    def test_a_full_disk_is_one_line_and_leaves_no_part(self, images, tmp_path):
        """RLIMIT_FSIZE makes the first feature file too large to write (EFBIG), as a full disk would.
        (Decoding in the process: the limit would also stop workers' shared memory, which a full disk does not.)"""
        listing = tmp_path / "list.txt"
        listing.write_text(f"{images[0]}\n")
        code = (
            "import resource, sys\nresource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.RLIM_INFINITY))\n"
            "from semcorr.cli import main\nsys.exit(main(sys.argv[1:]))"
        )
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "cache-teacher",
                str(listing),
                "--out",
                str(tmp_path / "cache"),
                "--model",
                "baseline",
                "--no-progress",
                "--workers",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
        )
        one_line(result, "cannot write it", "too large")
        assert not [p for p in (tmp_path / "cache").rglob("*.safetensors")]
        assert not [p for p in (tmp_path / "cache").rglob("*.tmp")]


def _cache_teacher_process(listing: Path, out: Path, *extra: str, limit_fsize: int | None = None) -> list[str]:
    """The command line of ``semcorr cache-teacher`` (baseline model) as a real process, under
    ``prlimit --fsize`` when ``limit_fsize`` is given."""
    command = [
        sys.executable,
        "-m",
        "semcorr.cli",
        "cache-teacher",
        str(listing),
        "--out",
        str(out),
        "--model",
        "baseline",
        "--no-progress",
        *extra,
    ]
    if limit_fsize is None:
        return command
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    return ["prlimit", f"--fsize={limit_fsize}", *command]


def _environment() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def _entries(store: Path) -> list[Path]:
    return sorted(store.rglob("*.safetensors"))


class TestDecodingWorkers:
    """A decoding worker that cannot hand its batch over, or dies, ends the run within seconds in one
    line that says why; the store holds only whole entries."""

    def test_a_file_size_limit_is_named_within_seconds(self, images, tmp_path):
        """Under ``prlimit --fsize`` the worker cannot make the shared-memory file of its batch (EFBIG):
        the run used to wait for that batch for 600 s."""
        from semcorr.extract.decode import canvas_bytes
        from semcorr.features.registry import build_extractor

        listing = tmp_path / "list.txt"
        listing.write_text(f"{images[0]}\n{images[1]}\n")
        batch_mb = 2 * canvas_bytes(build_extractor("baseline").preparer()) / 1e6
        start = time.perf_counter()
        result = subprocess.run(
            _cache_teacher_process(listing, tmp_path / "cache", "--workers", "1", limit_fsize=1000),
            capture_output=True,
            text=True,
            timeout=120,
            env=_environment(),
        )
        seconds = time.perf_counter() - start
        line = one_line(result)
        assert line == (
            f"semcorr: error: a decoding worker cannot hand over its batch of 2 images "
            f"({batch_mb:.1f} MB): the file-size limit (ulimit -f) is 1000 bytes, less than the "
            "shared-memory file in /dev/shm that takes the batch; raise the limit, or rerun with "
            "--workers 0 (decoding in this process)"
        )
        assert not _entries(tmp_path / "cache") and not list((tmp_path / "cache").rglob("*.tmp"))
        print(f"file-size limit: one line after {seconds:.1f} s (process start included)")
        assert seconds < 120

    def test_a_killed_worker_is_named_with_its_signal(self, tmp_path):
        """SIGKILL to the decoding worker mid-run (as the out-of-memory killer sends it)."""
        big = tmp_path / "big.png"
        ramp = np.linspace(0, 255, 2400, dtype=np.float32)
        Image.fromarray(np.stack([np.add.outer(ramp[:1600] / 2, ramp / 2).astype(np.uint8)] * 3, -1)).save(big)
        folder = tmp_path / "images"
        folder.mkdir()
        for index in range(400):  # one slow-to-decode image under many names: a long run
            (folder / f"{index:03d}.png").symlink_to(big)
        store = tmp_path / "cache"
        process = subprocess.Popen(
            _cache_teacher_process(folder, store, "--workers", "1", "--batch-size", "2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(),
        )
        try:
            worker = _worker_once_written(process, store)
            os.kill(worker, signal.SIGKILL)
            killed = time.perf_counter()
            stdout, stderr = process.communicate(timeout=120)
            seconds = time.perf_counter() - killed
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        line = one_line(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        assert line == (
            f"semcorr: error: a decoding worker (pid {worker}) was killed by signal SIGKILL (Killed): "
            "the out-of-memory killer sends it when memory runs out; rerun with fewer --workers, or "
            "--workers 0 (decoding in this process)"
        )
        print(f"SIGKILL: one line {seconds:.2f} s after the kill")
        assert seconds < 10
        from semcorr.store import FeatureFolder

        written = _entries(store)
        assert 0 < len(written) < 400 and not list(store.rglob("*.tmp"))
        assert len(FeatureFolder(store).keys()) == len(written)  # every entry whole


def _worker_once_written(process: subprocess.Popen, store: Path, wait: float = 240.0) -> int:
    """The pid of ``process``'s decoding worker (its child) once the first entries are written."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended first: {process.communicate()[1][-2000:]}")
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        if not children.exists():
            pytest.skip("this kernel does not list a process's children in /proc")
        pids = [int(pid) for pid in children.read_text().split()]
        if pids and len(_entries(store)) >= 2:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError("no decoding worker, or no entry written, in time")


def test_decoding_workers_fit_in_shared_memory():
    """A worker that cannot put its batch in /dev/shm would hang the loader: fewer are started."""
    from semcorr.extract.decode import workers_that_fit

    with pytest.warns(UserWarning, match="1 decoding worker"):
        assert workers_that_fit(4, 10_000_000, room=64_000_000) == 1
    with pytest.warns(UserWarning, match="0 decoding worker"):
        assert workers_that_fit(2, 40_000_000, room=64_000_000) == 0
    assert workers_that_fit(4, 1_000_000, room=64_000_000) == 4 and workers_that_fit(0, 10**9, room=0) == 0


class TestNoNaN:
    def _cache(self, tmp_path: Path) -> tuple[Path, Path]:
        from semcorr.geometry import ImageGeometry
        from semcorr.store import FeatureFolder

        files = sorted(data_path("pf-willow", "car(G)").glob("*.png"))[:4]
        listing = tmp_path / "list.txt"
        listing.write_text("".join(f"{f}\n" for f in files))
        cache = FeatureFolder.create(tmp_path / "cache", {"model": "noise"})
        generator = torch.Generator().manual_seed(0)
        for f in files:
            cache.put(str(f), torch.randn(16, 4, 4, generator=generator), ImageGeometry.fit((100, 100), 56))
        return listing, cache.root

    def test_training_stops_at_the_first_non_finite_loss_and_keeps_the_last_good_checkpoint(self, tmp_path):
        listing, cache = self._cache(tmp_path)
        config = DistillConfig(
            images=str(listing),
            teacher_cache=str(cache),
            input_size=56,
            epochs=3,
            lr=1e30,
            neighbours=2,
            checkpoint_every=1,
            log_every=1,
            progress=False,
        )
        with pytest.raises(TrainingError, match=r"loss is not finite .* at step \d+") as caught:
            distill(config, tmp_path / "run", backbone=tiny_backbone())
        assert "last good checkpoint" in str(caught.value) and "\n" not in str(caught.value)
        run = tmp_path / "run"
        assert not (run / "adapter").exists()
        checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
        assert checkpoint["global_step"] >= 1 and all(torch.isfinite(v).all() for v in checkpoint["lora"].values())
        assert f"(step {checkpoint['global_step']})" in str(caught.value)

    def test_the_command_says_so_in_one_line(self, cli, tmp_path):
        listing, cache = self._cache(tmp_path)
        result = cli(
            "distill",
            "--images",
            listing,
            "--teacher-cache",
            cache,
            "--out",
            tmp_path / "run",
            "--random-weights",
            "--input-size",
            "28",
            "--lr",
            "1e30",
            "--epochs",
            "3",
            "--neighbours",
            "2",
            "--no-progress",
        )
        one_line(result, "not finite", "step")
        assert not (tmp_path / "run" / "adapter").exists()

    def test_a_non_finite_adapter_is_refused(self, cli, images, tmp_path):
        student = StudentExtractor(StudentConfig(input_size=28), backbone=tiny_backbone())
        with torch.no_grad():
            for parameter in lora_parameters(student.model).values():
                parameter.fill_(float("nan"))
        adapter = student.save_adapter(tmp_path / "adapter")
        with pytest.raises(CheckpointError, match="non-finite"):
            StudentExtractor(StudentConfig(input_size=28, adapter=str(adapter)), backbone=tiny_backbone())
        result = cli(
            "match",
            *images,
            "--points",
            "10,10",
            "--model",
            "student",
            "--random-weights",
            "--adapter",
            adapter,
            "--input-size",
            "56",
            "--out",
            tmp_path / "m.json",
        )
        one_line(result, "adapter_model.safetensors", "non-finite")
        assert not (tmp_path / "m.json").exists()


class TestResume:
    def test_torn_metrics_line_checkpoint_keys_and_a_finished_run_without_checkpoint(self, tmp_path):
        listing, cache = TestNoNaN()._cache(tmp_path)
        config = DistillConfig(
            images=str(listing),
            teacher_cache=str(cache),
            input_size=56,
            epochs=2,
            lr=1e-3,
            neighbours=2,
            checkpoint_every=1,
            log_every=1,
            progress=False,
        )
        run = tmp_path / "run"
        reference = distill(config, tmp_path / "reference", backbone=tiny_backbone())
        with pytest.raises(Crash):
            distill(config, run, backbone=tiny_backbone(), on_step=lambda step, loss: _stop_at(step, 3))
        metrics = run / "metrics.jsonl"
        metrics.write_text(metrics.read_text() + '{"epoch": 0, "step": 4, "lo')  # a crash mid-write
        with pytest.warns(UserWarning, match="cut off by a crash"):
            resumed = distill(config, run, backbone=tiny_backbone())
        assert resumed.global_step == reference.global_step
        steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
        assert steps == list(range(1, reference.global_step + 1))
        (run / "checkpoint.pt").unlink()  # finished, then its checkpoint deleted: never retrained over
        before = snapshot(run)
        with pytest.raises(InputError, match="checkpoint.pt is gone"):
            distill(config, run, backbone=tiny_backbone())
        assert snapshot(run) == before
        content = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=True)
        del content["config_digest"]
        torch.save(content, tmp_path / "reference" / "checkpoint.pt")
        with pytest.raises(CheckpointError, match="not a complete semcorr checkpoint"):
            distill(config, tmp_path / "reference", backbone=tiny_backbone())

    def test_a_killed_conversion_leaves_nothing_behind_for_long(self, tmp_path):
        from semcorr.features.released.distilldift import _write_folder

        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout.strip()
        leftover = tmp_path / f".student.{HOST}.{dead}.tmp"
        (leftover / "backbone").mkdir(parents=True)
        (leftover / "backbone" / "model.safetensors").write_bytes(b"x" * 1000)
        _write_folder(
            lambda folder: (folder.mkdir(), (folder / "distilldift.json").write_text("{}")), tmp_path / "student"
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


class Crash(Exception):
    """A crash after some steps (checkpoints are written every step)."""


def _stop_at(step: int, last: int) -> None:
    if step >= last:
        raise Crash


class TestInputChecks:
    def test_sizes_and_weights(self, cli, images, tmp_path):
        one_line(
            cli("match", *images, "--points", "1,1", "--model", "baseline", "--input-size", "140000"),
            "--input-size 140000",
            "at most",
            "SEMCORR_MAX_INPUT_SIZE",
        )
        one_line(cli("match", *images, "--points", "1,1", "--model", "baseline", "--input-size", "0"), "--input-size 0")
        one_line(
            cli("export-onnx", "--random-weights", "--size", "140000", "--out", tmp_path / "s.onnx"), "--size 140000"
        )
        text = tmp_path / "text.jpg"
        text.write_text("not an image, not weights")
        one_line(
            cli("match", *images, "--points", "1,1", "--model", "dinov2-s", "--weights", text),
            "text.jpg",
            "is a file, not a model folder",
        )

    def _spair(self, tmp_path: Path, edit) -> Path:
        root = tmp_path / "SPair-71k"
        shutil.copytree(data_path("spair-71k-mini", "SPair-71k"), root)
        path = sorted((root / "PairAnnotation" / "test").glob("*.json"))[0]
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        return root

    def test_annotation_size_must_fit_the_image(self, cli, tmp_path):
        root = self._spair(
            tmp_path, lambda data: data.update(trg_imsize=[data["trg_imsize"][0] * 2, data["trg_imsize"][1] * 2, 3])
        )
        one_line(
            cli("eval", "spair", "--data-root", root, "--model", "baseline", "--threshold", "image"),
            "trg_imsize",
            "does not fit this image",
        )

    def test_keypoints_outside_the_image_are_reported_and_left_out(self, cli, tmp_path):
        def far(data):
            data["src_kps"][0] = [1e6, -1e6]

        root = self._spair(tmp_path, far)
        result = cli(
            "eval", "spair", "--data-root", root, "--model", "baseline", "--quiet", "--out", tmp_path / "r.json"
        )
        assert result.returncode == 0, result.stderr
        assert "outside their image" in result.stderr and "1e+06" in result.stderr
        reference = cli(
            "eval",
            "spair",
            "--data-root",
            data_path("spair-71k-mini"),
            "--model",
            "baseline",
            "--quiet",
            "--out",
            tmp_path / "ref.json",
        )
        assert reference.returncode == 0
        counts = [json.loads((tmp_path / name).read_text())["n_keypoints"] for name in ("r.json", "ref.json")]
        assert counts[0] == counts[1] - 1

    def test_rgbd_images_outside_the_sequence_folder(self, cli, tmp_path):
        from threed_helpers import livingroom, write_rgbd

        root, data = livingroom()
        sequence = tmp_path / "scan"
        write_rgbd(sequence, root, data["frames"][:6], data["K"])
        cameras = json.loads((sequence / "cameras.json").read_text())
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        for frame in cameras["frames"]:
            moved = outside / Path(frame["rgb"]).name
            shutil.copy(sequence / frame["rgb"], moved)
            frame["rgb"] = str(moved)
        (sequence / "cameras.json").write_text(json.dumps(cameras))
        result = cli("make-3d-pairs", sequence, "--out", tmp_path / "pairs.h5", "--quiet")
        assert result.returncode == 0, result.stderr
        (outside / Path(cameras["frames"][0]["rgb"]).name).unlink()
        skipped = cli("make-3d-pairs", sequence, "--out", tmp_path / "pairs2.h5", "--quiet")
        assert skipped.returncode == 0 and "missing" in skipped.stderr and "elsewhere" in skipped.stderr
        one_line(
            cli("make-3d-pairs", sequence, "--out", tmp_path / "pairs3.h5", "--quiet", "--strict"),
            "missing",
            "elsewhere",
        )

    def test_points(self, cli, images, tmp_path):
        width = Image.open(images[0]).size[0]
        one_line(cli("match", *images, "--points", "-5,10", "--model", "baseline"), "point 0 (x=-5.0", "outside")
        ok = cli("match", "--points", "10,10", f"{width - 1},3", *images, "--model", "baseline")
        assert ok.returncode == 0, ok.stderr
        assert [m["source"] for m in json.loads(ok.stdout)["matches"]] == [[10.0, 10.0], [width - 1.0, 3.0]]
        for content, culprit in (("[]", "holds no points"), ("[[true, false]]", "finite numbers")):
            path = tmp_path / "points.json"
            path.write_text(content)
            one_line(cli("match", *images, "--points-file", path, "--model", "baseline"), "points.json", culprit)

    def test_a_tiny_image_is_warned_about(self, cli, images, tmp_path):
        tiny = tmp_path / "tiny.png"
        Image.new("RGB", (1, 1), (200, 30, 30)).save(tiny)
        result = cli("match", tiny, images[1], "--points", "0.5,0.5", "--model", "baseline")
        assert result.returncode == 0 and "semcorr: warning: " in result.stderr and "only 1x1 pixels" in result.stderr

    def test_earlier_results_are_kept_when_a_run_fails(self, cli, images, tmp_path):
        out = tmp_path / "m.json"
        assert cli("match", *images, "--points", "10,10", "--model", "baseline", "--out", out).returncode == 0
        before = out.read_bytes()
        broken = tmp_path / "broken.png"
        broken.write_bytes(images[1].read_bytes()[:300])
        one_line(
            cli("match", images[0], broken, "--points", "10,10", "--model", "baseline", "--out", out), "broken.png"
        )
        assert out.read_bytes() == before


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    import av

    folder = tmp_path_factory.mktemp("video")
    whole = folder / "whole.mp4"
    container = av.open(str(whole), "w", options={"movflags": "faststart"})  # the index first: a cut file opens
    stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
    rng = np.random.default_rng(0)
    for _ in range(12):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    cut = folder / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


class TestDamagedVideo:
    def test_reported_with_the_frame_number_or_stopped(self, cli, cut, tmp_path):
        result = cli(
            "video", cut, "--points", "10,10", "--model", "baseline", "--tracks", tmp_path / "t.csv", "--quiet"
        )
        assert result.returncode == 0, result.stderr
        assert "cut.mp4" in result.stderr and "of the 12 frames it declares" in result.stderr
        tracked = len((tmp_path / "t.csv").read_text().splitlines()) - 1
        assert 0 < tracked < 12 and f"only {tracked} of the 12" in result.stderr
        one_line(
            cli(
                "video",
                cut,
                "--points",
                "10,10",
                "--model",
                "baseline",
                "--tracks",
                tmp_path / "s.csv",
                "--on-error",
                "stop",
                "--quiet",
            ),
            "cut.mp4",
            "--on-error stop",
        )
        assert not (tmp_path / "s.csv").exists()


@pytest.fixture
def pair_file(tmp_path):
    """A small 3D pair file (synthetic plane sequences, 64x48 images) and the name of its first pair."""
    from threed_helpers import plane_scene

    from semcorr.threed import make_3d_pairs

    data = tmp_path / "scenes"
    for index in range(2):
        plane_scene(data / f"seq{index}", [0.0, 0.02, 0.04, 0.06])
    path = tmp_path / "pairs.h5"
    make_3d_pairs(data, path, progress=False)
    with h5py.File(path, "r") as file:
        name = file["index"][0].decode()
    return path, name


def _set_point(path: Path, name: str, key: str, row: int, value: tuple[float, float]) -> None:
    with h5py.File(path, "r+") as file:
        points = file["pairs"][name][key][()]
        points[row] = value
        file["pairs"][name][key][...] = points


class TestPairInputsCheckedBeforeTraining:
    """Pair files and pair lists are checked whole when opened: a bad row is named before any training
    step (it used to stop the run when its batch came up, after checkpoints were written)."""

    def test_a_pair_file_with_a_nan_or_an_outside_point(self, pair_file):
        from semcorr.threed import open_3d_pairs

        path, name = pair_file
        _set_point(path, name, "target_xy", 3, (float("nan"), 12.5))
        with pytest.raises(InputError) as caught:
            open_3d_pairs(path)
        assert str(caught.value) == (
            f"{path}: pair {name}, row 3: target_xy (nan, 12.5) is not finite; the file is "
            "damaged, make it again with `semcorr make-3d-pairs`"
        )
        _set_point(path, name, "target_xy", 3, (10.0, 12.5))
        _set_point(path, name, "source_xy", 1, (70.0, -2.0))
        with pytest.raises(InputError) as caught:
            open_3d_pairs(path)
        assert str(caught.value) == (
            f"{path}: pair {name}, row 1: source_xy (70, -2) lies outside its 64x48 source "
            "image; the file is damaged, make it again with `semcorr make-3d-pairs`"
        )

    def test_finetune_3d_refuses_it_before_writing_anything(self, cli, pair_file, tmp_path):
        path, name = pair_file
        _set_point(path, name, "target_xy", 0, (float("inf"), 1.0))
        result = cli(
            "finetune-3d",
            "--pair-file",
            path,
            "--out",
            tmp_path / "run",
            "--random-weights",
            "--input-size",
            "28",
            "--epochs",
            "1",
            "--no-progress",
        )
        assert one_line(result) == (
            f"semcorr: error: {path}: pair {name}, row 0: target_xy (inf, 1) is not finite; "
            "the file is damaged, make it again with `semcorr make-3d-pairs`"
        )
        assert not (tmp_path / "run").exists()

    def test_distill_refuses_a_pair_list_line_before_writing_anything(self, cli, tmp_path):
        listing, cache = TestNoNaN()._cache(tmp_path)
        keys = listing.read_text().split()
        pairs = tmp_path / "pairs.txt"
        pairs.write_text(f"{keys[0]} {keys[1]}\n# a comment\n{keys[2]} elsewhere/missing.png\n")
        result = cli(
            "distill",
            "--images",
            listing,
            "--pair-list",
            pairs,
            "--teacher-cache",
            cache,
            "--out",
            tmp_path / "run",
            "--random-weights",
            "--input-size",
            "28",
            "--no-progress",
        )
        assert one_line(result) == (
            f"semcorr: error: {pairs}:3: image 'elsewhere/missing.png' is not among the images of --images {listing}"
        )
        assert not (tmp_path / "run").exists()


class TestRefusalsNameTheProblem:
    def test_a_checkpoint_naming_a_forbidden_global_or_no_checkpoint(self, cli, images, tmp_path):
        class Payload:
            def __reduce__(self):
                return (os.system, ("true",))

        evil = tmp_path / "evil.pth"
        torch.save({"model": {"w": torch.zeros(2)}, "args": Payload()}, evil)
        garbage = tmp_path / "garbage.pth"
        garbage.write_bytes(bytes(range(7, 256)) * 8)
        for path, message in (
            (evil, f"{evil}: refused: the file names os.system, which semcorr never loads"),
            (garbage, f"{garbage}: not a checkpoint (neither PyTorch's zip format nor a pickle)"),
        ):
            result = cli(
                "match",
                *images,
                "--points",
                "1,1",
                "--model",
                "dinov2-s",
                "--weights",
                path,
                "--out",
                tmp_path / "m.json",
            )
            assert one_line(result) == f"semcorr: error: {message}"
        assert not (tmp_path / "m.json").exists()

    def test_a_data_root_that_is_a_file(self, cli, tmp_path):
        afile = tmp_path / "PF-WILLOW.zip"
        afile.write_bytes(b"PK\x03\x04 not unpacked")
        for benchmark, folder in (
            ("pf-willow", "the PF-WILLOW folder"),
            ("spair", "an SPair-71k folder"),
            ("cub", "a CUB-200-2011 folder"),
            ("pf-pascal", "the PF-dataset-PASCAL folder"),
            ("ap10k", "an AP-10K folder or COCO keypoint .json file"),
        ):
            result = cli("eval", benchmark, "--data-root", afile, "--model", "baseline", "--out", tmp_path / "r.json")
            assert one_line(result) == f"semcorr: error: {afile}: is a file, not {folder}", benchmark
        assert sorted(p.name for p in tmp_path.iterdir()) == ["PF-WILLOW.zip"]
