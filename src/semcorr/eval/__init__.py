"""Benchmark evaluation: PCK (pure functions), the benchmark registry and the runner.

    from semcorr.eval import evaluate
    result = evaluate("spair", "data/SPair-71k", model="dinov2-b-reg")
    result["pck"]["0.1"]       # PCK@0.1 of the target box, per keypoint, in percent

Names load on first use, so importing the ``semcorr eval`` command stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BENCHMARKS": "benchmarks", "Benchmark": "benchmarks", "get_benchmark": "benchmarks",
    "correct_keypoints": "pck", "random_guess_correct": "pck", "summarize": "pck", "threshold_length": "pck",
    "PCKSettings": "runner", "evaluate": "runner", "FeatureStore": "feature_store", "format_table": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
