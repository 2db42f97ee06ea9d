"""Training the student: the losses, image pairing, the shared engine, distillation and refinement."""

from __future__ import annotations

from .distill import DistillConfig, DistillResult, distill
from .engine import TrainResult
from .finetune import FinetuneConfig, evaluate_refinement, finetune, open_point_pairs
from .losses import distillation_loss, refinement_loss, similarity, soft_argmax
from .pairing import ListedPairs, RetrievalPairs, nearest_neighbours

__all__ = ["DistillConfig", "DistillResult", "FinetuneConfig", "ListedPairs", "RetrievalPairs", "TrainResult",
           "distill", "distillation_loss", "evaluate_refinement", "finetune", "nearest_neighbours", "open_point_pairs",
           "refinement_loss", "similarity", "soft_argmax"]
