"""The Ray engine on a local Ray instance (2 CPUs) started once for this module: every PF-WILLOW image
exactly once with the local engine's features, a killed job completed by a rerun, unreadable images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO, data_path

from semcorr.errors import InputError
from semcorr.extract import ExtractSettings, ModelSpec, RaySettings, extract_features
from semcorr.features.registry import build_extractor
from semcorr.images import list_images
from semcorr.store import FeatureFolder

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'semcorr[ray]')")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'semcorr[ray]')")

# A driver of its own, joining the test's Ray instance: killed mid-run by the test.
DRIVER = """
import sys
from semcorr.extract import ExtractSettings, ModelSpec, RaySettings, extract_features
extract_features(sys.argv[1], sys.argv[2], model=ModelSpec("baseline", overrides={"input_size": 112}),
                 settings=ExtractSettings(batch_size=2), engine="ray", ray=RaySettings(address=sys.argv[3]),
                 progress=False)
"""


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with 2 CPUs for the module; its address, for other drivers."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def ray_extract(images, out, **settings):
    """The Ray engine on the module's instance: the baseline at 112 px (an 8x8 grid, fast on 2 CPUs)."""
    return extract_features(
        images,
        out,
        model=ModelSpec("baseline", overrides={"input_size": 112}),
        settings=ExtractSettings(**settings),
        engine="ray",
        ray=RaySettings(),
        progress=False,
    )


def assert_whole(store: FeatureFolder, keys: list[str]) -> None:
    """Every key exactly once, every entry whole, no temporary file left."""
    stored = store.keys()
    assert sorted(stored) == sorted(keys) and len(stored) == len(set(stored)) == len(store)
    assert store.missing(keys) == [] and not list(store.root.rglob("*.tmp"))


@pytest.mark.usefixtures("one_thread")
def test_pf_willow_once_with_the_local_engines_features(cluster, tmp_path):
    images = data_path("pf-willow")
    keys = [item.key for item in list_images(images)]
    report = ray_extract(images, tmp_path / "ray", batch_size=8)
    assert report.written == len(keys) == 100 and not report.failed and report.engine == "ray (1 actor)"
    local = extract_features(
        images,
        tmp_path / "local",
        model=build_extractor("baseline", input_size=112),
        settings=ExtractSettings(batch_size=8, workers=1),
        progress=False,
    )
    assert local.written == 100
    by_ray, by_local = FeatureFolder(tmp_path / "ray"), FeatureFolder(tmp_path / "local")
    assert_whole(by_ray, keys)
    assert by_ray.config == by_local.config
    for key in keys:
        assert torch.equal(by_ray.get(key), by_local.get(key)) and torch.equal(
            by_ray.embedding(key), by_local.embedding(key)
        )
        assert by_ray.geometry(key) == by_local.geometry(key)
    again = ray_extract(images, tmp_path / "ray")
    assert (again.written, again.already_done) == (0, 100)


def test_a_killed_job_is_completed_by_a_rerun(cluster, tmp_path):
    images = data_path("pf-willow")
    keys = [item.key for item in list_images(images)]
    out = tmp_path / "store"
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(images), str(out), cluster],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while len(list(out.glob("entries/*/*.safetensors"))) < 6:
        assert driver.poll() is None, driver.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the Ray job wrote nothing in 240 s"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    done = FeatureFolder(out).keys()
    assert 6 <= len(done) < len(keys), "killed mid-run"

    report = ray_extract(images, out, batch_size=8)
    assert report.already_done + report.written == len(keys) and report.written > 0 and not report.failed
    assert report.already_done >= len(done)  # what the killed job finished is kept, not redone
    assert_whole(FeatureFolder(out), keys)


def test_unreadable_images_are_reported_by_path(cluster, tmp_path):
    good = sorted(data_path("pf-willow").glob("*/*.png"))[:5]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{path}\n" for path in [*good[:2], corrupt, *good[2:]]))
    report = ray_extract(listing, tmp_path / "store", batch_size=2)
    assert report.written == 5 and [(key, where) for key, where, _ in report.failed] == [(str(corrupt), str(corrupt))]
    assert "corrupt or truncated" in report.failed[0][2] or "cannot identify" in report.failed[0][2]
    logged = [json.loads(line) for line in (tmp_path / "store" / "errors-ray.jsonl").read_text().splitlines()]
    assert [entry["path"] for entry in logged] == [str(corrupt)]
    assert_whole(FeatureFolder(tmp_path / "store"), [str(path) for path in good])
    with pytest.raises(InputError, match=r"corrupt.png.*--on-error stop"):
        ray_extract(listing, tmp_path / "stopped", batch_size=2, on_error="stop")


@pytest.mark.usefixtures("one_thread")
def test_the_pipelines_stages_carry_the_teachers_two_canvases(tmp_path):
    """decode_row and RayExtractor as Ray runs them, without Ray: the teacher's dict of canvases
    travels as two columns and gives extract()'s features; an unreadable row passes through."""
    from helpers import tiny_teacher

    from semcorr.extract.ray_engine import RayExtractor, decode_row
    from semcorr.store import extractor_identity
    from semcorr.store.folder import identity_digest

    teacher = tiny_teacher(tmp_path)
    prepare = teacher.preparer()
    image = sorted(data_path("pf-willow").glob("*/*.png"))[0]
    blank = {"pixels.sdxl": np.zeros((3, 32, 32), np.float32), "pixels.dino": np.zeros((3, 112, 112), np.float32)}
    rows = [
        decode_row({"key": "a", "path": str(image), "category": "car"}, prepare=prepare, blank=blank),
        decode_row({"key": "b", "path": str(tmp_path / "missing.png"), "category": ""}, prepare=prepare, blank=blank),
    ]
    assert rows[0]["pixels.sdxl"].shape == (3, 32, 32) and rows[1]["error"].endswith("not found")
    batch = {
        name: np.stack([row[name] for row in rows])
        if name.startswith("pixels")
        else np.array([row[name] for row in rows], dtype=object)
        for name in rows[0]
    }
    digest = identity_digest(json.loads(json.dumps(extractor_identity(teacher))))
    actor = RayExtractor(teacher, str(tmp_path / "store"), digest, embeddings=False)
    written = actor(batch)
    assert list(written["bytes"] > 0) == [True, False]
    fresh = teacher.extract(image, categories=["car"]).features[0].half()
    assert torch.equal(FeatureFolder(tmp_path / "store").get("a"), fresh)


def test_actors_that_leave_no_cpu_to_decode_are_refused(cluster, tmp_path):
    images = sorted(data_path("pf-willow").glob("*/*.png"))[:2]
    with pytest.raises(InputError, match=r"--concurrency 2 actors .* take 2 of the Ray cluster's 2 CPUs"):
        extract_features(
            images[0].parent,
            tmp_path / "store",
            model="baseline",
            engine="ray",
            ray=RaySettings(concurrency=2),
            progress=False,
        )
