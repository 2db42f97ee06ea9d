"""`semcorr reproduce distilldift --tiny`: the whole plan on the shared data, killed once and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, data_path

STAGES = ("data", "teacher-cache", "distill", "pairs-3d", "refine", "evaluate", "table")


def _command(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "semcorr.cli",
        "reproduce",
        "distilldift",
        "--tiny",
        "--root",
        str(root),
        "--data",
        str(data_path()),
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def _env() -> dict[str, str]:
    # two threads: the students run at their full 434² under the authors' rule, the largest work of the suite
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1")


def test_the_plan_is_printed_before_anything_runs(cli, tmp_path):
    result = cli(
        "reproduce",
        "distilldift",
        "--tiny",
        "--root",
        tmp_path / "run",
        "--data",
        data_path(),
        "--plan-only",
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    for stage in STAGES:
        assert f"\n{stage} " in result.stdout
    assert "to run" in result.stdout and "still to run: about" in result.stdout
    assert not (tmp_path / "run").exists()  # nothing written


def test_bad_input_is_one_line(cli, tmp_path):
    result = cli("reproduce", "distilldift", "--tiny", "--root", tmp_path / "run", "--data", tmp_path / "nothing")
    assert result.returncode == 1 and "--tiny needs the small real data" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli(
        "reproduce", "distilldift", "--tiny", "--root", tmp_path / "run", "--data", data_path(), "--stage", "nonsense"
    )
    assert result.returncode == 1 and "--stage nonsense: not a stage" in result.stderr
    result = cli(
        "reproduce", "distilldift", "--tiny", "--root", tmp_path / "run", "--data", data_path(), "--stage", "distill"
    )
    assert result.returncode == 1 and "needs the stages before it" in result.stderr


def test_a_root_that_cannot_hold_the_run_is_refused_before_the_plan(cli, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    result = cli("reproduce", "distilldift", "--root", a_file, "--plan-only", "--device", "cpu")
    assert result.returncode == 1
    assert result.stderr.strip() == f"semcorr: error: {a_file}: is a file; give a folder for the run folder"
    assert result.stdout == ""  # refused before the plan is printed


def test_tiny_plan_end_to_end_killed_once_and_resumed(tmp_path):
    root = tmp_path / "run"
    process = subprocess.Popen(
        _command(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), start_new_session=True
    )
    seen = []
    deadline = time.monotonic() + 600
    assert process.stdout is not None
    for line in process.stdout:  # kill it once distillation has started: after two whole stages
        seen.append(line)
        if line.startswith("[distill] the student") or time.monotonic() > deadline:
            time.sleep(2.0)
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    markers = root / ".stages"
    assert (markers / "data.json").is_file() and (markers / "teacher-cache.json").is_file()
    assert not (markers / "distill.json").exists() and not (root / "table.md").exists()

    resumed = subprocess.run(_command(root), capture_output=True, text=True, env=_env(), timeout=1200)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out = resumed.stdout
    assert "[data] done before: skipped" in out and "[teacher-cache] done before: skipped" in out
    assert "[distill] done in" in out and "[table] done in" in out
    for stage in STAGES:
        assert json.loads((markers / f"{stage}.json").read_text())["stage"] == stage
    table = (root / "table.md").read_text()
    assert "paper: DistillDIFT, unsupervised | 65.1 | 77.4 | 89.4" in table
    assert "semcorr: distilled + 3D [authors' rule: distilldift-paper]" in table and "--tiny" in table
    results = sorted(p for p in (root / "results").glob("*.json") if p.name != "index.json")
    assert len(results) == 3 * 2 * 2  # three models, two benchmarks, two rules

    # a damaged output makes its stage run again, and only it
    (root / "table.md").unlink()
    again = subprocess.run(_command(root), capture_output=True, text=True, env=_env(), timeout=600)
    assert again.returncode == 0, again.stderr
    assert "[evaluate] done before: skipped" in again.stdout and "[table] done in" in again.stdout
    assert (root / "table.md").read_text() == table
