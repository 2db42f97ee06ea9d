"""Teacher-feature caches (`cache-teacher`, the store without embeddings): resume after SIGKILL, several
ranks, refusing mixed configs, unreadable images."""

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

from semcorr.errors import InputError
from semcorr.extract import ExtractSettings, extract_features
from semcorr.images import list_images
from semcorr.runtime import resolve_rank
from semcorr.store import FeatureFolder, extractor_identity, rank_of

TESTS = Path(__file__).resolve().parent

# Fills a cache with the tiny teacher (same seeds, so the same identity, in every process).
WORKER = f"""
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {str(TESTS)!r})
from pathlib import Path
from helpers import tiny_teacher
from semcorr.extract import ExtractSettings, extract_features
report = extract_features(sys.argv[2], sys.argv[3], model=tiny_teacher(Path(sys.argv[1])),
                          settings=ExtractSettings(batch_size=1, embeddings=False, workers=0), progress=False)
print(json.dumps({{"written": report.written, "already": report.already_done, "other": report.other_ranks}}))
"""


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
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path / name), str(listing), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=REPO,
    )


def cache_teacher(teacher, listing: Path, out: Path, **options):
    """``semcorr cache-teacher``'s call: the teacher's dense features, no embeddings."""
    settings = ExtractSettings(embeddings=False, workers=0, **options)
    return extract_features(listing, out, model=teacher, settings=settings, progress=False)


def assert_complete(cache: FeatureFolder, keys: list[str], shape: tuple[int, ...]) -> None:
    """Every image exactly once, each entry whole and readable, no temporary file left."""
    stored = cache.keys()
    assert sorted(stored) == sorted(keys) and len(set(stored)) == len(stored) == len(cache)
    for key in keys:
        features = cache.get(key)
        assert features.shape == shape and features.dtype == torch.float16 and torch.isfinite(features).all()
    assert not list(cache.root.rglob("*.tmp"))


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
        by_killed_run = FeatureFolder(out).keys()

        teacher = tiny_teacher(tmp_path / "tok-resume")
        report = cache_teacher(teacher, listing, out)
        assert report.already_done == done and report.written == len(keys) - done and not report.failed
        cache = FeatureFolder(out)
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
        assert_complete(FeatureFolder(out), keys, (56, 8, 8))  # no overlap (counts add up), no gap

    def test_refuses_a_cache_of_another_config(self, tmp_path):
        listing = image_list(tmp_path, 2)
        out = tmp_path / "cache"
        cache_teacher(tiny_teacher(tmp_path), listing, out)
        other = tiny_teacher(tmp_path, teacher_weights=(1.0, 0.5))
        with pytest.raises(InputError, match=r"config.teacher_weights \(\[1.0, 1.0\] -> \[1.0, 0.5\]\)"):
            cache_teacher(other, listing, out)
        identity = FeatureFolder(out).identity
        assert identity == json.loads(json.dumps(extractor_identity(tiny_teacher(tmp_path))))
        assert identity["config"]["sdxl"]["timesteps"] == [51, 101, 151, 201] and identity["grid"] == [8, 8]
        with pytest.raises(InputError, match="holds no embeddings, this run writes embeddings"):
            extract_features(listing, out, model=tiny_teacher(tmp_path), progress=False)


class TestCommand:
    def test_corrupt_images_are_skipped_or_stop_the_run(self, tmp_path, cli):
        listing = image_list(tmp_path, 3)
        corrupt = tmp_path / "corrupt.png"
        corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        listing.write_text(listing.read_text() + f"{corrupt}\n")
        common = [str(listing), "--model", "baseline", "--input-size", "56", "--no-progress", "--workers", "0"]
        result = cli("cache-teacher", *common, "--out", tmp_path / "skip")
        assert result.returncode == 0, result.stderr
        assert "extracted 3 images" in result.stdout and "1 failed" in result.stdout and "MB per image" in result.stdout
        assert "skipped" in result.stderr and "corrupt.png" in result.stderr
        failures = (tmp_path / "skip" / "errors-rank0.jsonl").read_text().splitlines()
        assert len(failures) == 1 and json.loads(failures[0])["path"] == str(corrupt)
        assert len(FeatureFolder(tmp_path / "skip")) == 3

        result = cli("cache-teacher", *common, "--out", tmp_path / "stop", "--on-error", "stop")
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "corrupt.png" in result.stderr and "--on-error stop" in result.stderr

    def test_rank_options(self, tmp_path, cli):
        listing = image_list(tmp_path, 6)
        keys = [i.key for i in list_images(listing)]
        out = tmp_path / "cache"
        args = [
            "cache-teacher",
            str(listing),
            "--out",
            str(out),
            "--model",
            "baseline",
            "--input-size",
            "56",
            "--no-progress",
            "--world-size",
            "2",
            "--workers",
            "0",
        ]
        assert cli(*args, "--rank", "1").returncode == 0
        assert sorted(FeatureFolder(out).keys()) == sorted(k for k in keys if rank_of(k, 2) == 1)
        assert cli(*args, "--rank", "0").returncode == 0
        assert sorted(FeatureFolder(out).keys()) == sorted(keys)
        result = cli(*args, "--rank", "2")
        assert result.returncode == 1 and "rank 2 is not in" in result.stderr
