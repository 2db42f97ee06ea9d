"""`semcorr extract` and the local engine: parallel decoding gives extract()'s features, global
embeddings, resume (damaged entries written again), unreadable images, and two processes under torchrun."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, data_path
from helpers import tiny_backbone

from semcorr.extract import ExtractSettings, extract_batches, extract_features, image_loader
from semcorr.features import DinoV2Config, DinoV2Extractor
from semcorr.features.registry import build_extractor
from semcorr.images import list_images
from semcorr.store import FeatureFolder, rank_of

pytestmark = pytest.mark.usefixtures("one_thread")


def willow_list(tmp_path, count: int, extra: tuple = ()) -> tuple:
    """A list file of ``count`` real PF-WILLOW images (and ``extra`` paths after the first two)."""
    images = sorted(data_path("pf-willow").glob("*/*.png"))[:count]
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{p}\n" for p in [*images[:2], *extra, *images[2:]]))
    return listing, [str(p) for p in images]


def corrupt_image(tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return path


class TestLocalEngine:
    def test_decoding_workers_give_extracts_features_and_class_tokens(self, tmp_path):
        listing, paths = willow_list(tmp_path, 6)
        extractor = DinoV2Extractor(DinoV2Config(input_size=56, resize_mode="letterbox"), backbone=tiny_backbone())
        out = tmp_path / "store"
        report = extract_features(
            listing, out, model=extractor, settings=ExtractSettings(batch_size=4, workers=2), progress=False
        )
        assert report.written == 6 and report.bytes_per_image > 0 and report.images_per_second > 0
        store = FeatureFolder(out)
        assert store.embedding_kind == "class token" and sorted(store.keys()) == sorted(paths)
        fresh = extractor.extract(paths)
        with torch.inference_mode():
            pixels, _ = extractor.preprocess(paths)
            tokens = extractor.model(pixel_values=(pixels - extractor.mean) / extractor.std).last_hidden_state
        for i, path in enumerate(paths):
            assert torch.equal(store.get(path), fresh.features[i].half())
            assert store.geometry(path) == fresh.geometries[i]
            assert torch.equal(store.embedding(path), F.normalize(tokens[i, 0], dim=0).half())

    def test_mean_of_the_cells_for_models_without_a_class_token(self):
        extractor = build_extractor("baseline", input_size=56)
        items = list_images(data_path("pf-willow"))[:3]
        (batch,) = list(extract_batches(extractor, items, ExtractSettings(batch_size=3, workers=0)))
        fresh = extractor.extract([item.path for item in items]).features
        expected = F.normalize(fresh.mean(dim=(2, 3)), dim=1).half()
        assert torch.equal(torch.stack([entry.embedding for entry in batch.entries]), expected)
        assert extractor.embedding_kind == "mean of the cells"

    def test_loader_batches_in_order_and_keeps_failures_apart(self, tmp_path):
        listing, paths = willow_list(tmp_path, 5, extra=(corrupt_image(tmp_path),))
        items = list_images(listing)
        batches = list(
            image_loader(items, build_extractor("baseline", input_size=56).preparer(), batch_size=3, workers=2)
        )
        assert [len(b.items) for b in batches] == [2, 3] and batches[0].pixels.shape == (2, 3, 56, 56)
        assert [str(item.path) for b in batches for item in b.items] == paths
        ((failed, message),) = batches[0].failures
        assert failed.path.name == "corrupt.png" and "corrupt.png" in message

    def test_resume_writes_damaged_entries_again(self, tmp_path):
        listing, paths = willow_list(tmp_path, 6)
        out = tmp_path / "store"
        options = dict(
            model=build_extractor("baseline", input_size=56), progress=False, settings=ExtractSettings(workers=0)
        )
        extract_features(listing, out, **options)
        store = FeatureFolder(out)
        torn = store.path(paths[3])
        torn.write_bytes(torn.read_bytes()[:-7])  # a truncated entry must not count as done
        report = extract_features(listing, out, **options)
        assert (report.already_done, report.written, report.redone) == (5, 1, 1)
        assert sorted(store.keys()) == sorted(paths) and store.missing(paths) == []
        assert "1 damaged entries written again" in report.summary()

    def test_any_sequence_of_items_is_a_list_of_images(self, tmp_path):
        items = list_images(data_path("pf-willow"))[:2]
        report = extract_features(
            collections.deque(items),
            tmp_path / "store",
            progress=False,
            model=build_extractor("baseline", input_size=56),
            settings=ExtractSettings(workers=0),
        )
        assert report.written == 2 and sorted(FeatureFolder(tmp_path / "store").keys()) == [i.key for i in items]


class TestCommand:
    def test_extract_reports_an_unreadable_image_by_path_and_extracts_the_rest(self, tmp_path, cli):
        corrupt = corrupt_image(tmp_path)
        listing, paths = willow_list(tmp_path, 4, extra=(corrupt,))
        out = tmp_path / "store"
        result = cli(
            "extract",
            listing,
            "--out",
            out,
            "--model",
            "baseline",
            "--input-size",
            "56",
            "--batch-size",
            "2",
            "--workers",
            "1",
            "--no-progress",
        )
        assert result.returncode == 0, result.stderr
        assert "extracted 4 images" in result.stdout and "1 failed" in result.stdout
        assert f"skipped an unreadable image: {corrupt}" in result.stderr
        store = FeatureFolder(out)
        assert sorted(store.keys()) == sorted(paths) and store.embedding(paths[0]).shape == (128,)
        assert str(corrupt) in (out / "errors-rank0.jsonl").read_text()
        result = cli("extract", listing, "--out", out, "--model", "baseline", "--input-size", "56", "--no-progress")
        assert "extracted 0 images" in result.stdout and "4 already done, 1 failed" in result.stdout

        result = cli(
            "extract",
            listing,
            "--out",
            tmp_path / "other",
            "--model",
            "baseline",
            "--on-error",
            "stop",
            "--input-size",
            "56",
            "--no-progress",
            "--no-embeddings",
        )
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and "corrupt.png" in result.stderr
        assert FeatureFolder(tmp_path / "other").embedding_kind is None

    def test_refusals_are_one_line_before_any_model(self, tmp_path, cli):
        listing, _ = willow_list(tmp_path, 2)
        (tmp_path / "file").write_text("")
        result = cli("extract", listing, "--out", tmp_path / "file", "--model", "baseline")
        assert result.returncode == 1 and "is a file" in result.stderr and result.stderr.count("\n") == 1
        result = cli("extract", listing, "--out", tmp_path / "s", "--model", "baseline", "--batch-size", "0")
        assert result.returncode == 1 and "--batch-size 0 (ExtractSettings.batch_size)" in result.stderr
        result = cli("extract", listing, "--out", tmp_path / "s", "--engine", "ray", "--world-size", "2")
        assert result.returncode == 1 and "shares the work among its actors" in result.stderr

    def test_two_processes_under_torchrun_share_the_list(self, tmp_path):
        listing, paths = willow_list(tmp_path, 12)
        out = tmp_path / "store"
        environment = {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
                "-m",
                "semcorr.cli",
                "extract",
                str(listing),
                "--out",
                str(out),
                "--model",
                "baseline",
                "--input-size",
                "56",
                "--workers",
                "1",
                "--no-progress",
            ],
            env={**os.environ, **environment},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        counts = {rank: sum(rank_of(p, 2) == rank for p in paths) for rank in (0, 1)}
        for rank in (0, 1):
            assert f"rank {rank}/2: extracted {counts[rank]} images" in result.stdout
        store = FeatureFolder(out)
        assert sorted(store.keys()) == sorted(paths) and len(store) == len(paths)

    def test_bench_decode_times_each_worker_count(self, tmp_path, cli):
        out = tmp_path / "decode.json"
        result = cli(
            "bench-decode",
            data_path("pf-willow"),
            "--model",
            "baseline",
            "--input-size",
            "56",
            "--limit",
            "6",
            "--workers",
            "0",
            "1",
            "--repeats",
            "1",
            "--out",
            out,
        )
        assert result.returncode == 0, result.stderr
        assert "| 0 |" in result.stdout and "| 1 |" in result.stdout and "input_size=56" in result.stdout
        rows = json.loads(out.read_text())["rows"]
        assert [row["workers"] for row in rows] == [0, 1] and all(row["images_per_s"] > 0 for row in rows)
