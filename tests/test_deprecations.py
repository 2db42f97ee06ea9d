"""Old import paths and old option spellings keep working for one release, with one warning that
names the new one (semcorr._moved, semcorr._legacy, semcorr.cli.options.RENAMED_OPTIONS)."""

from __future__ import annotations

import importlib
import shutil
import warnings
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import data_path

from semcorr._moved import ADAPTED, MOVED_MODULES, REMOVED_IN, RENAMED, resolve

FIXTURES = Path(__file__).resolve().parent / "fixtures"
pytestmark = pytest.mark.usefixtures("one_thread")


def public_names(module: ModuleType) -> list[str]:
    """The public names of ``module``: its ``__all__`` (a package's lazy names), else the names it
    defines (not those it imports from elsewhere)."""
    if hasattr(module, "__all__"):
        return sorted(module.__all__)
    own = module.__name__
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and getattr(value, "__module__", own) == own
    )


def old_name_gives(old: str) -> tuple[object, object, list[str]]:
    """``old`` looked up as ``from package.module import name`` and as ``module.name``, and the
    deprecation warnings of each lookup."""
    module, _, name = old.rpartition(".")
    found, messages = [], []
    for lookup in (f"from {module} import {name} as value", f"import {module}\nvalue = {old}"):
        scope: dict = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(lookup, scope)  # noqa: S102 - the user's import line, verbatim
        found.append(scope["value"])
        messages.append([str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)])
    return found[0], found[1], messages


@pytest.mark.parametrize("old", sorted(MOVED_MODULES) + sorted(RENAMED))
def test_every_old_path_resolves_to_the_new_object_with_one_warning(old):
    if old in MOVED_MODULES:
        new = MOVED_MODULES[old]
        assert importlib.import_module(old).__name__ == old
        cases = [
            (f"{old}.{name}", f"{new}.{name}")
            for name in public_names(importlib.import_module(new))
            if f"{old}.{name}" not in RENAMED
        ]
        assert cases, f"{new} defines no public name"
    else:
        cases = [(old, RENAMED[old])]
    for old_name, new_name in cases:
        by_import, by_attribute, messages = old_name_gives(old_name)
        expected = resolve(new_name)
        assert by_import is expected and by_attribute is expected, old_name
        named = ADAPTED.get(new_name, new_name)
        for warned in messages:  # exactly one warning per lookup, naming the new path
            assert len(warned) == 1, (old_name, warned)
            assert warned[0].startswith(f"{old_name} ") and named in warned[0], warned[0]
            assert warned[0].endswith(f"the old name works until semcorr {REMOVED_IN}"), warned[0]


def test_adapters_are_reached_only_through_the_tables():
    targets = set(RENAMED.values())
    assert set(ADAPTED) <= targets
    assert all(target in ADAPTED for target in targets if target.startswith("semcorr._legacy."))


def quietly(old: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return resolve(RENAMED[old])


class TestOldCallsGiveTheSameResults:
    """Adapters in semcorr._legacy, checked against what the old code wrote or returned."""

    def test_teacher_cache_reads_a_cache_the_old_code_wrote(self):
        from semcorr.store import FeatureFolder

        TeacherCache = quietly("semcorr.cache.TeacherCache")
        cache, store = TeacherCache(FIXTURES / "teacher-cache-v1"), FeatureFolder(FIXTURES / "teacher-cache-v1")
        assert sorted(cache.keys()) == ["cats/a.png", "cats/b.png", "dogs/c.png"] and "cats/a.png" in cache
        assert cache.original_size("cats/a.png") == (40, 60)  # as the old code wrote it
        assert torch.equal(cache.get("cats/a.png"), store.get("cats/a.png"))

    def test_teacher_cache_put_takes_the_original_size(self, tmp_path):
        from semcorr.geometry import ImageGeometry
        from semcorr.store import FeatureFolder

        TeacherCache = quietly("semcorr.cache.store.TeacherCache")
        identity = {"model": "m", "config": {"input_size": 56, "resize_mode": "letterbox"}}
        cache = TeacherCache.create(tmp_path / "cache", identity)
        features = torch.randn(8, 4, 4)
        written = cache.put("cats/1.jpg", features, (30, 40))
        assert written == cache.path("cats/1.jpg").stat().st_size
        assert torch.equal(cache.get("cats/1.jpg"), features.half()) and cache.original_size("cats/1.jpg") == (30, 40)
        store = FeatureFolder(tmp_path / "cache")
        assert store.geometry("cats/1.jpg") == ImageGeometry.fit((30, 40), 56, "letterbox")
        assert quietly("semcorr.cache.store.FORMAT") == "semcorr-teacher-cache"
        assert quietly("semcorr.cache.store.VERSION") == 1  # the teacher-cache version the store still reads

    def test_cache_teacher_resumes_and_fills_a_cache_as_the_old_code_did(self, tmp_path):
        from semcorr.features.registry import build_extractor
        from semcorr.images import list_images

        cache_teacher = quietly("semcorr.cache.cache_teacher")
        TeacherCache = quietly("semcorr.cache.TeacherCache")
        extractor = build_extractor("baseline", input_size=56)
        images = list_images(FIXTURES / "teacher-cache-v1-images")
        earlier = shutil.copytree(FIXTURES / "teacher-cache-v1", tmp_path / "earlier")
        report = cache_teacher(extractor, images, earlier, batch_size=2, progress=False)
        assert type(report).__name__ == "CacheReport" and (report.written, report.already_cached) == (0, 3)
        report = cache_teacher(extractor, images, tmp_path / "new", batch_size=2, progress=False)
        assert (report.rank, report.world_size, report.written, report.failed) == (0, 1, 3, [])
        assert "cached 3 images" in report.summary()
        old, new = TeacherCache(earlier), TeacherCache(tmp_path / "new")
        for key in old.keys():
            assert torch.allclose(new.get(key, dtype=torch.float32), old.get(key, dtype=torch.float32), atol=2e-3)
            assert new.original_size(key) == old.original_size(key)

    def test_find_root_of_spair_and_cub(self, tmp_path):
        from semcorr.errors import InputError

        spair_find_root = quietly("semcorr.data.spair.find_root")
        root = data_path("spair-71k-mini")
        assert spair_find_root(root) == root / "SPair-71k" and spair_find_root(root / "SPair-71k") == root / "SPair-71k"
        with pytest.raises(InputError, match="not an SPair-71k folder"):
            spair_find_root(tmp_path)
        cub_find_root = quietly("semcorr.data.cub.find_root")
        (tmp_path / "CUB_200_2011").mkdir()
        (tmp_path / "CUB_200_2011" / "images.txt").write_text("1 a.jpg\n")
        assert cub_find_root(tmp_path) == tmp_path / "CUB_200_2011"

    def test_spair_training_pairs(self):
        from semcorr.data import load_spair

        spair_training_pairs = quietly("semcorr.train.pairing.spair_training_pairs")
        root = data_path("spair-71k-mini")
        images, keys = spair_training_pairs(root, "test")
        assert images == root / "SPair-71k" / "JPEGImages"
        expected = [
            (p.source_image.relative_to(images).as_posix(), p.target_image.relative_to(images).as_posix())
            for p in load_spair(root, "test")
        ]
        assert keys == expected and all((images / key).is_file() for pair in keys for key in pair)

    def test_fingerprint_config_digest_and_compile_extractor(self):
        from semcorr.features.registry import build_extractor
        from semcorr.train import DistillConfig

        fingerprint = quietly("semcorr.eval.feature_store.fingerprint")
        small, other = build_extractor("baseline", input_size=56), build_extractor("baseline", input_size=84)
        assert fingerprint(small) == fingerprint(build_extractor("baseline", input_size=56)) != fingerprint(other)
        assert len(fingerprint(small)) == 16
        config_digest = quietly("semcorr.train.engine.config_digest")
        config = DistillConfig(images="i", lr=1e-3)
        assert config_digest(config) == config.digest() != config_digest(DistillConfig(images="i", lr=1e-2))
        compile_extractor = quietly("semcorr.fast.compile_extractor")
        assert compile_extractor.__name__ == "compile_extractor" and callable(compile_extractor)


def test_renamed_options_warn_once_and_are_documented(cli, tmp_path):
    """The option table and the documentation agree (the parsing itself: tests/test_cli.py)."""
    from semcorr.cli.options import RENAMED_OPTIONS

    page = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    for entry in RENAMED_OPTIONS:
        assert f"| `{entry.command}` | `{entry.old}` | `{entry.new}` | {entry.note} |" in page, entry
    for old in sorted(MOVED_MODULES) + sorted(RENAMED):
        assert f"`{old}`" in page, old
