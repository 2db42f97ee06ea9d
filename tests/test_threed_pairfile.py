"""The 3D pair file and ``semcorr make-3d-pairs``: killed and resumed as a real process, settings, locking."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from threed_helpers import plane_scene

from semcorr.cli import main
from semcorr.errors import InputError
from semcorr.threed import PairSettings, PairWriter, make_3d_pairs, make_header, open_3d_pairs, read_pair_file_header
from semcorr.threed.pairfile import count_pairs

SEQUENCES = 100


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """Many tiny synthetic sequences (a plane seen from shifted cameras), so a run lasts long enough to kill."""
    data = tmp_path_factory.mktemp("many") / "data"
    rng = np.random.default_rng(3)
    for i in range(SEQUENCES):
        plane_scene(data / f"seq{i:03d}", sorted(rng.uniform(-0.1, 0.1, 5).tolist()))
    return data


@pytest.fixture(scope="module")
def reference(many, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "pairs.h5"
    summary = make_3d_pairs(many, out, progress=False)
    assert summary["written"] == SEQUENCES and summary["in_file"] == SEQUENCES and summary["pairs"] == 3 * SEQUENCES
    return out


def content(path):
    """Every group's and dataset's attributes and values, by name."""
    found = {}
    with h5py.File(path, "r") as file:
        found["/"] = ({key: np.asarray(value).tolist() for key, value in file.attrs.items()}, None)

        def visit(name, item):
            attrs = {key: np.asarray(value).tolist() for key, value in item.attrs.items()}
            found[name] = (attrs, item[()].tolist() if isinstance(item, h5py.Dataset) else None)

        file.visititems(visit)
    return found


def command(data, out, *extra):
    return [sys.executable, "-m", "semcorr.cli", "make-3d-pairs", str(data), "--out", str(out), "--quiet", *extra]


class TestKillAndResume:
    def test_sigkill_mid_run_then_resume_gives_the_same_file(self, many, reference, tmp_path):
        out = tmp_path / "pairs.h5"
        parts = tmp_path / "pairs.h5.parts"
        process = subprocess.Popen(command(many, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not (parts.is_dir() and len(list(parts.glob("*.npz"))) >= 3):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no sequence written within 120 s"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        assert process.returncode == -signal.SIGKILL
        written = len(list(parts.glob("*.npz")))
        assert not out.exists() and 3 <= written < SEQUENCES  # killed mid-run: no output yet, some parts
        result = subprocess.run(command(many, out, "--summary"), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert f"found {written} already done" in result.stdout
        assert not parts.exists() and not (tmp_path / "pairs.h5.lock").exists()
        assert content(out) == content(reference)

    def test_partial_runs_and_crash_leftovers(self, many, reference, tmp_path):
        out = tmp_path / "pairs.h5"
        first = make_3d_pairs(many, out, progress=False, max_sequences=40)
        assert first["written"] == 40 and first["in_file"] == 40
        with PairWriter(out, read_pair_file_header(out)) as writer:  # what a resumed run finds done
            assert len(writer.done) == 40
        (tmp_path / "pairs.h5.tmp").write_bytes(b"half a merge")  # a merge killed midway
        parts = tmp_path / "pairs.h5.parts"
        parts.mkdir(exist_ok=True)
        (parts / "0123.npz.tmp").write_bytes(b"half a part")
        second = make_3d_pairs(many, out, progress=False)
        assert second["already_done"] == 40 and second["written"] == SEQUENCES - 40
        assert content(out) == content(reference)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.h5"]
        again = make_3d_pairs(many, out, progress=False)
        assert again["written"] == 0 and again["already_done"] == SEQUENCES


class TestPairFile:
    def test_reads_back_as_a_dataset(self, reference, many):
        with open_3d_pairs(reference) as pairs:
            assert len(pairs) == 3 * SEQUENCES and pairs.settings == PairSettings()
            pair = pairs[4]
            assert pair.sequence == "seq001" and pair.source_image.parent == many / "seq001" / "rgb"
            assert pair.source_xy.shape == pair.target_xy.shape and pair.source_xy.dtype == np.float32
            assert pair.source_size == pair.target_size == (48, 64) and len(pair.depth_error) == len(pair.source_xy)
        with h5py.File(reference, "r") as file:
            assert file.attrs["nms_radius"] == 10.0 and file.attrs["depth_tolerance"] == 0.05
            group = file["pairs/seq001"]
            assert list(group.attrs["frames"]) == ["00000", "00001", "00002", "00003"]
            assert file["counts"].shape == file["index"].shape == (3 * SEQUENCES,)
            counts = file["counts"][()]
        assert count_pairs(reference) == 3 * SEQUENCES  # from the index, no pair read
        assert count_pairs(reference, min_points=int(counts.max())) == int((counts == counts.max()).sum())

    def test_other_settings_refused_unless_overwrite(self, many, tmp_path):
        out = tmp_path / "p.h5"
        make_3d_pairs(many, out, progress=False, max_sequences=2)
        with pytest.raises(InputError, match="was made with other settings"):
            make_3d_pairs(many, out, progress=False, settings=PairSettings(depth_tolerance=0.1))
        summary = make_3d_pairs(
            many, out, progress=False, settings=PairSettings(depth_tolerance=0.1), overwrite=True, max_sequences=1
        )
        assert summary["in_file"] == 1 and read_pair_file_header(out)["settings"]["depth_tolerance"] == 0.1
        (tmp_path / "other.h5").write_bytes(b"not hdf5")
        with pytest.raises(InputError, match="other.h5: not an HDF5 file"):
            make_3d_pairs(many, tmp_path / "other.h5", progress=False)

    def test_one_writer_at_a_time(self, many, tmp_path):
        header = make_header(many, {"kind": "rgbd"}, PairSettings())
        with PairWriter(tmp_path / "p.h5", header):
            with pytest.raises(InputError, match="another run is writing it"):
                PairWriter(tmp_path / "p.h5", header)
        PairWriter(tmp_path / "p.h5", header).close()  # released


class TestCommand:
    def test_one_line_errors(self, tmp_path, capsys):
        assert main(["make-3d-pairs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p.h5")]) == 1
        assert capsys.readouterr().err.strip().endswith("nowhere: not found or not a folder")
        (tmp_path / "d").mkdir()
        assert main(["make-3d-pairs", str(tmp_path / "d"), "--out", str(tmp_path / "p.h5"), "--subset", "x"]) == 1
        assert "options subset apply to CO3D only" in capsys.readouterr().err

    def test_prints_summary(self, many, tmp_path, capsys):
        assert (
            main(
                [
                    "make-3d-pairs",
                    str(many),
                    "--out",
                    str(tmp_path / "p.h5"),
                    "--quiet",
                    "--max-sequences",
                    "2",
                    "--nms-radius",
                    "0",
                ]
            )
            == 0
        )
        line = capsys.readouterr().out
        assert "2 sequences in the file; this run wrote 2 (6 pairs," in line and "s per sequence" in line
        assert os.path.exists(tmp_path / "p.h5")
