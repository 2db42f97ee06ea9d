"""``semcorr reproduce``: a paper's pipeline from nothing to its table, as one resumable plan.

    from semcorr.reproduce import reproduce
    reproduce("distilldift", "runs/dd", tiny=True, data="../shared/data")

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "reproduce": "distilldift",
    "distilldift_plan": "distilldift",
    "PAPER_TABLE": "distilldift",
    "Plan": "plan",
    "Stage": "plan",
    "Context": "plan",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
