"""Combining the votes of several examples into one point and one confidence per keypoint.

Each example ``e`` that labels keypoint ``k`` votes for a target point ``p_e`` (its match) with a
cycle-consistency confidence ``q_e``: the target descriptor at ``p_e`` is matched back into the
example, and with ``c_e`` the distance (example pixels) from where it lands to the example's own
point, ``q_e = exp(-0.5 (c_e / (tau_c L_e))^2)``, ``L_e`` the example's longer side (as video
tracking, :mod:`semcorr.video.tracking`).

* **Point:** the weighted geometric median of the votes (Weiszfeld's iteration), weights ``q_e``:
  one wrong vote cannot drag the point away, as it drags a mean.
* **Agreement** of a vote: ``a_e = exp(-0.5 (|p_e - m| / (tau_a L_t))^2)``, its distance from the
  median ``m`` in target pixels, ``L_t`` the target's longer side.
* **Confidence:** ``(1 / E_k) sum_e q_e a_e`` over the ``E_k`` examples that label the keypoint: the
  share of examples whose match both comes back to where it started and agrees with the others.
  With one example it is the cycle confidence; with several, a keypoint the examples disagree on
  scores low even where each match comes back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

WEIGHT_FLOOR = 1e-6  # so that votes whose cycle confidences are all ~0 still have a median


def cycle_confidence(error: Tensor, tolerance: Tensor | float) -> Tensor:
    """``exp(-0.5 (error / tolerance)^2)``: 1 at no error, 0.61 at one tolerance, 0.14 at two."""
    return torch.exp(-0.5 * (error / tolerance) ** 2)


def geometric_median(points: Tensor, weights: Tensor, iterations: int = 64, epsilon: float = 1e-3) -> Tensor:
    """Weighted geometric median along the vote axis (Weiszfeld's iteration from the weighted mean).

    Args:
        points: (..., E, 2) votes.
        weights: (..., E) non-negative weights; a vote of weight 0 takes no part. Each row needs a
            positive weight somewhere (rows without one give NaN).
        epsilon: distances are floored at this (pixels), which keeps the iteration defined on a vote.
    Returns:
        (..., 2) the point minimising ``sum_e w_e |x - p_e|``.
    """
    weights = weights.to(points.dtype)
    median = (weights[..., None] * points).sum(-2) / weights.sum(-1, keepdim=True)
    for _ in range(iterations):
        inverse = weights / (points - median[..., None, :]).norm(dim=-1).clamp(min=epsilon)
        updated = (inverse[..., None] * points).sum(-2) / inverse.sum(-1, keepdim=True)
        moved = (updated - median).norm(dim=-1)
        median = updated
        if not bool((moved > epsilon * 1e-2).any()):
            break
    return median


@dataclass(frozen=True)
class Votes:
    """The combined votes of B targets with K keypoints each.

    Attributes:
        points: (B, K, 2) combined points in target pixels (0 where no example labels the keypoint).
        confidence: (B, K) in [0, 1] (module docstring; 0 without votes).
        agreement: (B, K) the cycle-weighted mean agreement of the votes with the combined point.
        cycle: (B, K) the mean cycle confidence of the votes.
        votes: (B, K) int, how many examples voted.
    """

    points: Tensor
    confidence: Tensor
    agreement: Tensor
    cycle: Tensor
    votes: Tensor


def combine_votes(points: Tensor, cycle: Tensor, voted: Tensor, target_sides: Tensor,
                  agreement_tolerance: float) -> Votes:
    """Combine each keypoint's votes (module docstring).

    Args:
        points: (B, E, K, 2) each example's vote in target pixels.
        cycle: (B, E, K) cycle confidence of each vote.
        voted: (B, E, K) bool, whether the example labels the keypoint (else its vote is ignored).
        target_sides: (B,) each target's longer side in pixels.
        agreement_tolerance: ``tau_a``, a fraction of the target's longer side.
    """
    points, cycle = points.transpose(1, 2).double(), cycle.transpose(1, 2).double()  # (B, K, E, ...)
    voted = voted.transpose(1, 2)
    weights = torch.where(voted, cycle.clamp(min=WEIGHT_FLOOR), torch.zeros_like(cycle))
    count = voted.sum(-1)
    has = count > 0
    median = geometric_median(points, torch.where(has[..., None], weights, torch.ones_like(weights)))
    distance = (points - median[..., None, :]).norm(dim=-1)
    tolerance = agreement_tolerance * target_sides.double()[:, None, None]
    agree = torch.where(voted, cycle_confidence(distance, tolerance), torch.zeros_like(distance))
    votes = count.clamp(min=1)
    mass = (weights * agree).sum(-1)
    confidence = torch.where(has, (cycle * agree * voted).sum(-1) / votes, torch.zeros_like(mass))
    agreement = torch.where(has, mass / weights.sum(-1).clamp(min=WEIGHT_FLOOR), torch.zeros_like(mass))
    mean_cycle = torch.where(has, (cycle * voted).sum(-1) / votes, torch.zeros_like(mass))
    median = torch.where(has[..., None], median, torch.zeros_like(median))
    return Votes(median.float(), confidence.float(), agreement.float(), mean_cycle.float(), count)
