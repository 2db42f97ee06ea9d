"""Training the student: the distillation loss, image pairing, and the distillation run."""

from __future__ import annotations

from .distill import DistillConfig, DistillResult, distill
from .losses import distillation_loss, similarity
from .pairing import ListedPairs, RetrievalPairs, nearest_neighbours

__all__ = ["DistillConfig", "DistillResult", "ListedPairs", "RetrievalPairs", "distill", "distillation_loss", "nearest_neighbours",
           "similarity"]
