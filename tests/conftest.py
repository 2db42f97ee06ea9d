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


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test talks to the Hugging Face hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
