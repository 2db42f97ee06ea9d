"""Shared test helpers: where the real data lives, and a fast offline hub."""

from __future__ import annotations

import os
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
