"""Teacher-feature cache: atomic entries, resume after SIGKILL, several ranks, refusing mixed configs."""

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
from helpers import tiny_teacher

from semcorr.cache import TeacherCache, cache_teacher, rank_of, teacher_identity
from semcorr.images import list_images
from semcorr.runtime import resolve_rank
from semcorr.fileio import HOST
from semcorr.cli import main
from semcorr.errors import CheckpointError, InputError

TESTS = Path(__file__).resolve().parent

# Fills a cache with the tiny teacher (same seeds, so the same identity, in every process).
WORKER = """
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from pathlib import Path
from helpers import tiny_teacher
from semcorr.cache import cache_teacher
from semcorr.images import list_images
from semcorr.runtime import resolve_rank
rank, world_size = resolve_rank()
report = cache_teacher(tiny_teacher(Path(sys.argv[1])), list_images(sys.argv[2]), sys.argv[3], rank=rank,
                       world_size=world_size, progress=False)
print(json.dumps({{"written": report.written, "already": report.already_cached, "other": report.other_ranks}}))
""".format(tests=str(TESTS))


pytestmark = pytest.mark.usefixtures("one_thread")


def image_list(tmp_path: Path, count: int) -> Path:
    """A list file of ``count`` real PF-WILLOW images."""
    folder = data_path("pf-willow")
    images = sorted(folder.glob("*/*.png"))[:count]
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{p}\n" for p in images))
    return listing


def worker(tmp_path: Path, listing: Path, out: Path, name: str, **env: str) -> subprocess.Popen:
    environment = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **env)
    return subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / name), str(listing), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, cwd=REPO)


def assert_complete(cache: TeacherCache, keys: list[str], shape: tuple[int, ...]) -> None:
    """Every image exactly once, each entry readable, no temporary file left."""
    stored = cache.keys()
    assert sorted(stored) == sorted(keys) and len(set(stored)) == len(stored) == len(cache)
    for key in keys:
        features = cache.get(key)
        assert features.shape == shape and features.dtype == torch.float16 and torch.isfinite(features).all()
    assert not list(cache.root.rglob("*.tmp"))


class TestStore:
    def test_roundtrip_and_metadata(self, tmp_path):
        cache = TeacherCache.create(tmp_path / "c", {"model": "m", "config": {"a": (1, 2)}})
        features = torch.randn(8, 3, 4)
        written = cache.put("cats/1.jpg", features, (30, 40))
        assert written == (tmp_path / "c").joinpath(cache.path("cats/1.jpg")).stat().st_size
        assert written < 8 * 3 * 4 * 2 + 512  # fp16 plus a small header
        reopened = TeacherCache(tmp_path / "c")
        assert torch.allclose(reopened.get("cats/1.jpg", dtype=torch.float32), features, atol=1e-2)
        assert reopened.original_size("cats/1.jpg") == (30, 40) and "cats/1.jpg" in reopened
        assert reopened.keys() == ["cats/1.jpg"] and len(reopened) == 1 and reopened.nbytes() == written
        with pytest.raises(KeyError, match="dogs/2.jpg"):
            reopened.get("dogs/2.jpg")
        cache.path("dogs/2.jpg").parent.mkdir(exist_ok=True)
        os.replace(cache.path("cats/1.jpg"), cache.path("dogs/2.jpg"))  # an entry under another key's name
        with pytest.raises(CheckpointError, match="does not belong to image 'dogs/2.jpg'"):
            reopened.get("dogs/2.jpg")

    def test_refuses_another_teacher_or_config(self, tmp_path):
        TeacherCache.create(tmp_path, {"model": "teacher", "config": {"timesteps": [51, 101]}})
        TeacherCache.create(tmp_path, {"model": "teacher", "config": {"timesteps": (51, 101)}})  # same: fine
        with pytest.raises(InputError, match=r"another teacher or config \(config.timesteps"):
            TeacherCache.create(tmp_path, {"model": "teacher", "config": {"timesteps": [51]}})
        with pytest.raises(InputError, match="not a teacher cache"):
            TeacherCache(tmp_path / "elsewhere")

    def test_stale_temporary_files_of_dead_processes_are_removed(self, tmp_path):
        cache = TeacherCache.create(tmp_path, {"model": "m"})
        finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True).stdout.strip()
        (tmp_path / "entries" / "ab").mkdir()
        stale = tmp_path / "entries" / "ab" / f".ab12.safetensors.{HOST}.{finished}.tmp"
        live = tmp_path / "entries" / "ab" / f".ab34.safetensors.{HOST}.{os.getpid()}.tmp"
        stale.write_bytes(b"half")
        live.write_bytes(b"half")
        assert cache.remove_stale_temporary_files() == 1 and not stale.exists() and live.exists()
        assert len(cache) == 0  # temporary files are never entries

    def test_ranks_split_without_overlap_or_gap(self):
        keys = [f"img/{i}.jpg" for i in range(500)]
        shares = [{k for k in keys if rank_of(k, 3) == r} for r in range(3)]
        assert set().union(*shares) == set(keys) and sum(map(len, shares)) == len(keys)
        assert min(map(len, shares)) > 100


class TestListing:
    def test_folder_and_list_file(self, tmp_path):
        (tmp_path / "a" / "b").mkdir(parents=True)
        for name in ("a/x.jpg", "a/b/y.PNG", "a/notes.txt"):
            (tmp_path / name).write_bytes(b"")
        items = list_images(tmp_path / "a", category_from_folder=True)
        assert [(i.key, i.category) for i in items] == [("b/y.PNG", "b"), ("x.jpg", "a")]
        (tmp_path / "list.txt").write_text("a/x.jpg\n# comment\n\na/b/y.PNG\n")
        assert [i.key for i in list_images(tmp_path / "list.txt")] == ["a/x.jpg", "a/b/y.PNG"]
        (tmp_path / "twice.txt").write_text("a/x.jpg\na/x.jpg\n")
        with pytest.raises(InputError, match="more than once"):
            list_images(tmp_path / "twice.txt")
        with pytest.raises(InputError, match="no such folder"):
            list_images(tmp_path / "missing")

    def test_rank_from_environment(self, monkeypatch):
        monkeypatch.setenv("RANK", "2")
        monkeypatch.setenv("WORLD_SIZE", "4")
        assert resolve_rank() == (2, 4) and resolve_rank(1, 2) == (1, 2)
        with pytest.raises(InputError, match="rank 4 is not in"):
            resolve_rank(4, 4)


class TestCacheTeacher:
    def test_resumes_after_sigkill_with_every_image_exactly_once(self, tmp_path):
        listing = image_list(tmp_path, 40)
        keys = [i.key for i in list_images(listing)]
        out = tmp_path / "cache"
        process = worker(tmp_path, listing, out, "tok-killed")
        deadline = time.monotonic() + 120
        while len(list(out.glob("entries/*/*.safetensors"))) < 3:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the worker wrote nothing in 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        done = len(list(out.glob("entries/*/*.safetensors")))
        assert 3 <= done < len(keys), "killed mid-run"
        by_killed_run = TeacherCache(out).keys()

        teacher = tiny_teacher(tmp_path / "tok-resume")
        report = cache_teacher(teacher, list_images(listing), out, progress=False)
        assert report.already_cached == done and report.written == len(keys) - done and not report.failed
        cache = TeacherCache(out)
        assert_complete(cache, keys, (56, 8, 8))
        key = by_killed_run[0]  # written by the killed process, recomputed here: the same teacher
        again = teacher.extract(list_images(listing)[keys.index(key)].path).features[0]
        assert torch.allclose(cache.get(key, dtype=torch.float32), again, atol=2e-3)

    def test_two_ranks_fill_one_cache(self, tmp_path):
        listing = image_list(tmp_path, 16)
        keys = [i.key for i in list_images(listing)]
        out = tmp_path / "cache"
        processes = [worker(tmp_path, listing, out, f"tok{rank}", RANK=str(rank), WORLD_SIZE="2") for rank in (0, 1)]
        reports = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
        assert [r["written"] for r in reports] == [sum(rank_of(k, 2) == rank for k in keys) for rank in (0, 1)]
        assert all(r["written"] > 0 and r["written"] + r["other"] == len(keys) for r in reports)
        assert_complete(TeacherCache(out), keys, (56, 8, 8))  # no overlap (counts add up), no gap

    def test_refuses_a_cache_of_another_config(self, tmp_path):
        listing = image_list(tmp_path, 2)
        out = tmp_path / "cache"
        cache_teacher(tiny_teacher(tmp_path), list_images(listing), out, progress=False)
        other = tiny_teacher(tmp_path, teacher_weights=(1.0, 0.5))
        with pytest.raises(InputError, match=r"config.teacher_weights \(\[1.0, 1.0\] -> \[1.0, 0.5\]\)"):
            cache_teacher(other, list_images(listing), out, progress=False)
        identity = TeacherCache(out).identity
        assert identity == json.loads(json.dumps(teacher_identity(tiny_teacher(tmp_path))))
        assert identity["config"]["sdxl"]["timesteps"] == [51, 101, 151, 201] and identity["grid"] == [8, 8]


class TestCommand:
    def test_corrupt_images_are_skipped_or_stop_the_run(self, tmp_path, capsys):
        listing = image_list(tmp_path, 3)
        corrupt = tmp_path / "corrupt.png"
        corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        listing.write_text(listing.read_text() + f"{corrupt}\n")
        common = [str(listing), "--model", "baseline", "--input-size", "56", "--no-progress"]
        assert main(["cache-teacher", *common, "--out", str(tmp_path / "skip")]) == 0
        captured = capsys.readouterr()
        assert "cached 3 images" in captured.out and "1 failed" in captured.out and "MB per image" in captured.out
        assert "skipped" in captured.err and "corrupt.png" in captured.err
        failures = (tmp_path / "skip" / "errors-rank0.jsonl").read_text().splitlines()
        assert len(failures) == 1 and json.loads(failures[0])["key"] == str(corrupt)
        assert len(TeacherCache(tmp_path / "skip")) == 3

        assert main(["cache-teacher", *common, "--out", str(tmp_path / "stop"), "--on-error", "stop"]) == 1
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "corrupt.png" in error and "--on-error stop" in error

    def test_rank_options(self, tmp_path, capsys):
        listing = image_list(tmp_path, 6)
        keys = [i.key for i in list_images(listing)]
        out = tmp_path / "cache"
        args = ["cache-teacher", str(listing), "--out", str(out), "--model", "baseline", "--input-size", "56",
                "--no-progress", "--world-size", "2"]
        assert main([*args, "--rank", "1"]) == 0
        assert sorted(TeacherCache(out).keys()) == sorted(k for k in keys if rank_of(k, 2) == 1)
        assert main([*args, "--rank", "0"]) == 0
        assert sorted(TeacherCache(out).keys()) == sorted(keys)
        assert main([*args, "--rank", "2"]) == 1 and "rank 2 is not in" in capsys.readouterr().err
