"""Shared fixtures: where the real data lives, a fast offline hub, and the CLI run in-process."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEMCORR_DATA", REPO.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """A path under the shared real data, or skip the test with the reason."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (set SEMCORR_DATA to the shared data folder)")
    return path


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread. Two OpenMP threads on a shared, loaded 2-core machine spin
    against other processes and make tiny-model tests 10-100x slower. Restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test talks to the Hugging Face hub (nor downloads anything else: semcorr takes
    HF_HUB_OFFLINE as offline), and none sees the user's semcorr cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SEMCORR_CACHE", str(tmp_path_factory.getbasetemp() / "semcorr-cache"))


@pytest.fixture
def read_only(tmp_path):
    """A folder nothing may be written into, even by root (immutable), or skip where that cannot be made."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permissions: make it immutable
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            folder.chmod(0o755)
            pytest.skip("cannot make a read-only folder here (root, and no chattr)")
    yield folder
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


@dataclass
class CliResult:
    """What a run of the ``semcorr`` command gave: exit status and its output."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: object) -> CliResult:
    """``semcorr ARGS...`` in this process, as the console script runs it: stdout and stderr captured
    (warnings printed to stderr as Python prints them), argparse's exits and uncaught exceptions
    (with their traceback) turned into an exit status."""
    from semcorr.cli import main

    out, err = io.StringIO(), io.StringIO()

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except Exception:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
        finally:
            if threads is not None:  # --threads must not leak into later tests
                torch.set_num_threads(threads)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """Run ``semcorr`` in-process: ``cli("match", a, b, "--points", "10,20")`` -> :class:`CliResult`."""
    return run_cli
