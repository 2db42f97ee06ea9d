"""Training the student: the configs, the losses, image pairing, the shared engine, distillation and
refinement. Names load on first use (:mod:`semcorr._lazy`)."""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "TrainConfig": "config",
    "DistillConfig": "config",
    "FinetuneConfig": "config",
    "DistillResult": "distillation",
    "distill": "distillation",
    "TrainResult": "engine",
    "evaluate_refinement": "refinement",
    "finetune": "refinement",
    "open_point_pairs": "refinement",
    "distillation_loss": "losses",
    "refinement_loss": "losses",
    "similarity": "losses",
    "soft_argmax": "losses",
    "ListedPairs": "pairing",
    "RetrievalPairs": "pairing",
    "nearest_neighbours": "pairing",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
