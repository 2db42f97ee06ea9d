"""Benchmark evaluation: PCK (pure functions), protocols, the evaluation cache and one runner for
pair and k-shot evaluation (the benchmark registry is :mod:`semcorr.data.benchmarks`).

    from semcorr.eval import evaluate
    result = evaluate("spair", "data/SPair-71k", model="dinov2-b-reg")
    result["pck"]["0.1"]       # PCK@0.1 of the target box, per keypoint, in percent

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "PCKSettings": "pck",
    "correct_keypoints": "pck",
    "random_guess_correct": "pck",
    "summarize": "pck",
    "threshold_length": "pck",
    "evaluate": "runner",
    "evaluate_models": "runner",
    "FeatureCache": "cache",
    "format_table": "report",
    "format_comparison": "report",
    "PROTOCOLS": "protocols",
    "Protocol": "protocols",
    "get_protocol": "protocols",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
