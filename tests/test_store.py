"""The feature store: entries, their verification, the reader API, and teacher caches written before it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_teacher

from semcorr.errors import CheckpointError, InputError
from semcorr.extract import ExtractSettings, extract_features
from semcorr.features.registry import build_extractor
from semcorr.fileio import HOST
from semcorr.geometry import ImageGeometry
from semcorr.images import ImageItem, list_images
from semcorr.store import BackgroundWriter, Entry, FeatureFolder, MemoryFeatures, rank_of

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Teacher caches written by semcorr before the feature store (commit c998fa4, `semcorr.cache.cache_teacher`):
# the baseline at 56 px, and the tiny teacher (tests/helpers.py, seed 0) letterboxed, over the images beside them.
LEGACY = FIXTURES / "teacher-cache-v1"
LEGACY_TEACHER = FIXTURES / "teacher-cache-v1-teacher"
LEGACY_IMAGES = FIXTURES / "teacher-cache-v1-images"

pytestmark = pytest.mark.usefixtures("one_thread")


def geometry(height: int = 30, width: int = 40) -> ImageGeometry:
    return ImageGeometry.fit((height, width), 56, "letterbox")


class TestEntries:
    def test_roundtrip_reader_api(self, tmp_path):
        store = FeatureFolder.create(tmp_path / "s", {"model": "m", "config": {"a": (1, 2)}}, embedding="class token")
        features, embedding = torch.randn(8, 3, 4), torch.randn(16)
        written = store.put("cats/1.jpg", features, geometry(), embedding=embedding)
        assert written == store.path("cats/1.jpg").stat().st_size < (8 * 3 * 4 + 16) * 2 + 600  # fp16 + a header
        reopened = FeatureFolder(tmp_path / "s")
        assert torch.allclose(reopened.get("cats/1.jpg", dtype=torch.float32), features, atol=1e-2)
        assert reopened.get("cats/1.jpg").dtype == torch.float16 and reopened.embedding("cats/1.jpg").shape == (16,)
        assert reopened.geometry("cats/1.jpg") == geometry() and reopened.embedding_kind == "class token"
        assert "cats/1.jpg" in reopened and "dogs/2.jpg" not in reopened and 3 not in reopened
        assert reopened.keys() == list(reopened) == ["cats/1.jpg"] and len(reopened) == 1
        assert reopened.nbytes() == written
        with pytest.raises(KeyError, match="dogs/2.jpg"):
            reopened.get("dogs/2.jpg")
        with pytest.raises(ValueError, match="need an embedding"):
            store.put("x", features, geometry())

    def test_the_memory_backend_answers_as_the_folder_does(self, tmp_path):
        folder = FeatureFolder.create(tmp_path / "s", {"model": "m"}, embedding="class token")
        memory = MemoryFeatures()
        features, embedding, norms = torch.randn(8, 3, 4), torch.randn(16), torch.rand(1, 3, 4)
        for backend in (folder, memory):
            backend.put("cats/1.jpg", features, geometry(), embedding=embedding, norms=norms)
            backend.put("dogs/2.jpg", features * 2, geometry(20, 50), embedding=-embedding)
        assert memory.keys() == list(memory) == sorted(folder.keys()) and len(memory) == len(folder) == 2
        for key in folder.keys():
            assert torch.equal(memory.get(key), folder.get(key)) and memory.get(key).dtype == torch.float16
            assert torch.equal(memory.embedding(key), folder.embedding(key))
            assert memory.geometry(key) == folder.geometry(key)
            found = (memory.norms(key), folder.norms(key))
            assert found[0] is found[1] is None or torch.equal(*found)
        assert memory.nbytes() == 2 * (8 * 3 * 4 * 2 + 16 * 2) + 3 * 4 * 4  # float16 features, embedding; float32 norms
        memory.clear()
        assert len(memory) == 0 and "cats/1.jpg" not in memory

    def test_a_whole_entry_is_verified_by_size_and_header(self, tmp_path):
        store = FeatureFolder.create(tmp_path, {"model": "m"})
        store.put("a", torch.randn(4, 2, 2), geometry())
        store.put("b", torch.randn(4, 2, 2), geometry())
        path = store.path("a")
        whole = path.read_bytes()
        path.write_bytes(whole[:-10])  # torn: the header promises more bytes than the file has
        assert "a" not in store and store.missing(["a", "b", "c"]) == ["a", "c"] and store.keys() == ["b"]
        with pytest.raises(CheckpointError, match="damaged entry"):
            store.get("a")
        path.write_bytes(whole + b"\0")  # longer than described
        assert "a" not in store
        path.write_bytes(whole)
        assert "a" in store
        store.path("c").parent.mkdir(exist_ok=True)
        shutil.copy(path, store.path("c"))  # an entry under another key's name
        assert "c" not in store and sorted(store) == ["a", "b"]
        with pytest.raises(CheckpointError, match="not one of image 'c'"):
            store.get("c")

    def test_refuses_another_model_config_or_contents(self, tmp_path):
        FeatureFolder.create(tmp_path, {"model": "teacher", "config": {"timesteps": [51, 101]}})
        FeatureFolder.create(tmp_path, {"model": "teacher", "config": {"timesteps": (51, 101)}})  # same: fine
        with pytest.raises(InputError, match=r"another model or config \(config.timesteps"):
            FeatureFolder.create(tmp_path, {"model": "teacher", "config": {"timesteps": [51]}})
        with pytest.raises(InputError, match=r"holds no embeddings, this run writes embeddings \(class token\)"):
            FeatureFolder.create(
                tmp_path, {"model": "teacher", "config": {"timesteps": [51, 101]}}, embedding="class token"
            )
        with pytest.raises(InputError, match="not a feature store"):
            FeatureFolder(tmp_path / "elsewhere")
        (tmp_path / "foreign").mkdir()
        (tmp_path / "foreign" / "config.json").write_text(json.dumps({"format": "something-else", "version": 1}))
        with pytest.raises(CheckpointError, match="not a semcorr-feature-store version 1"):
            FeatureFolder(tmp_path / "foreign")

    def test_stale_temporary_files_of_dead_processes_are_removed(self, tmp_path):
        store = FeatureFolder.create(tmp_path, {"model": "m"})
        finished = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout.strip()
        (tmp_path / "entries" / "ab").mkdir()
        stale = tmp_path / "entries" / "ab" / f".ab12.safetensors.{HOST}.{finished}.tmp"
        live = tmp_path / "entries" / "ab" / f".ab34.safetensors.{HOST}.{os.getpid()}.tmp"
        stale.write_bytes(b"half")
        live.write_bytes(b"half")
        assert store.remove_stale_temporary_files() == 1 and not stale.exists() and live.exists()
        assert len(store) == 0  # temporary files are never entries

    def test_ranks_split_without_overlap_or_gap(self):
        keys = [f"img/{i}.jpg" for i in range(500)]
        shares = [{k for k in keys if rank_of(k, 3) == r} for r in range(3)]
        assert set().union(*shares) == set(keys) and sum(map(len, shares)) == len(keys)
        assert min(map(len, shares)) > 100

    def test_background_writer_writes_everything_and_raises_a_failed_write(self, tmp_path):
        store = FeatureFolder.create(tmp_path, {"model": "m"})
        entries = [Entry(f"k{i}", torch.randn(4, 2, 2), geometry()) for i in range(5)]
        with BackgroundWriter(lambda e: store.put(e.key, e.features, e.geometry), depth=1) as writer:
            writer.submit(entries[:2])
            writer.submit(entries[2:])
        assert writer.written == 5 and sorted(store.keys()) == [e.key for e in entries]

        def failing(entry: Entry) -> int:
            raise OSError(f"disk full at {entry.key}")

        writer = BackgroundWriter(failing)
        writer.submit(entries[:1])
        with pytest.raises(OSError, match="disk full at k0"):
            writer.close()


class TestEarlierTeacherCaches:
    """Caches of `semcorr cache-teacher` before the store read as they are, and resume."""

    def test_read_with_their_geometry(self):
        store = FeatureFolder(LEGACY)
        assert store.legacy and store.embedding_kind is None
        keys = sorted(store.keys())
        assert keys == ["cats/a.png", "cats/b.png", "dogs/c.png"] and all(key in store for key in keys)
        extractor = build_extractor("baseline", input_size=56)
        for item in list_images(LEGACY_IMAGES):
            fresh = extractor.extract(item.path)
            assert torch.allclose(store.get(item.key, dtype=torch.float32), fresh.features[0], atol=2e-3)
            assert store.geometry(item.key) == fresh.geometries[0]
        assert store.geometry("cats/a.png").original_size == (40, 60)

    def test_the_teachers_geometry_is_its_dinov2_members(self, tmp_path):
        store = FeatureFolder(LEGACY_TEACHER)
        teacher = tiny_teacher(tmp_path, resize_mode="letterbox")
        for key in store.keys():
            fresh = teacher.extract(LEGACY_IMAGES / key)
            assert store.geometry(key) == fresh.geometries[0] and store.geometry(key).offset != (0.0, 0.0)
            assert torch.allclose(store.get(key, dtype=torch.float32), fresh.features[0], atol=2e-3)

    def test_resume_into_an_earlier_cache(self, tmp_path):
        cache = shutil.copytree(LEGACY_TEACHER, tmp_path / "cache")
        teacher = tiny_teacher(tmp_path, resize_mode="letterbox")
        report = extract_features(
            LEGACY_IMAGES, cache, model=teacher, settings=ExtractSettings(embeddings=False, workers=0), progress=False
        )
        assert (report.already_done, report.written) == (2, 1)
        store = FeatureFolder(cache)
        assert store.legacy and sorted(store.keys()) == ["cats/a.png", "cats/b.png", "dogs/c.png"]
        assert store.geometry("dogs/c.png") == teacher.extract(LEGACY_IMAGES / "dogs/c.png").geometries[0]
        with pytest.raises(InputError, match="another model or config"):
            extract_features(
                LEGACY_IMAGES,
                cache,
                model=tiny_teacher(tmp_path),
                progress=False,
                settings=ExtractSettings(embeddings=False, workers=0),
            )


class TestEvaluationCache:
    def test_eval_features_live_in_a_store_and_earlier_cache_folders_are_named(self, tmp_path):
        from semcorr.eval import FeatureCache

        earlier = tmp_path / "cache" / "0123456789abcdef"  # the evaluation cache of earlier versions: flat files
        earlier.mkdir(parents=True)
        (earlier / "feedbeef.safetensors").write_bytes(b"")
        images = sorted(LEGACY_IMAGES.glob("*/*.png"))
        extractor = build_extractor("baseline", input_size=56)
        with pytest.warns(UserWarning, match=r"1 folders of the earlier evaluation cache \(e.g. 0123456789abcdef\)"):
            with FeatureCache(extractor, cache_dir=tmp_path / "cache", progress=False, workers=0) as first:
                first.compute(images, flipped=images[:1])
                folder = first.folder
        store = FeatureFolder(folder)
        assert folder.parent == tmp_path / "cache" and len(store.keys()) == 4 and store.embedding_kind is None
        shutil.rmtree(earlier)  # as the warning says
        with FeatureCache(extractor, cache_dir=tmp_path / "cache", progress=False, workers=0) as second:
            second.compute(images, flipped=images[:1])
            assert second.computed == 0 and second.folder == folder
            features, geometry = second.get(images[0], flipped=True)
        fresh = extractor.extract(ImageItem("a", images[0], mirrored=True).load())
        assert torch.equal(features, fresh.features[0].half()) and geometry == fresh.geometries[0]
