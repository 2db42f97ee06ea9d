"""Combining the votes of several examples into one point and one confidence per keypoint.

Each example ``e`` that labels keypoint ``k`` votes for a target point ``p_e`` (its match) with a
cycle-consistency confidence ``q_e``: the target descriptor at ``p_e`` is matched back into the
example, and with ``c_e`` the distance (example pixels) from where it lands to the example's own
point, ``q_e = exp(-0.5 (c_e / (tau_c L_e))^2)``, ``L_e`` the example's longer side (as video
tracking, :mod:`semcorr.video.tracking`).

* **Point:** the place most examples support (weighted mode seeking): each vote's support is
  ``sum_j q_j exp(-0.5 (|p_e - p_j| / (tau_a L_t))^2)``, ``L_t`` the target's longer side; the vote
  with the most support is refined by a weighted mean shift among its neighbours. Where the
  examples split, the point is on the side with more (cycle-weighted) votes, never between them
  (a geometric median or a mean lands between disagreeing votes). On PF-WILLOW, scored on the same
  targets, the mode gained more from more examples than the geometric median, the mean of the
  examples' similarity maps (weighted or not) and a mixture of their match distributions
  (docs/transfer.md, *How many examples?*).
* **Agreement** of a vote: ``a_e = exp(-0.5 (|p_e - m| / (tau_a L_t))^2)``, its distance from the
  point ``m``.
* **Confidence:** the point ``m`` itself is matched back into every example that labels the
  keypoint (cycle confidence ``r_e``, as ``q_e``), and the confidence is the mean of the better
  half of the ``r_e`` (the ``ceil(E_k / 2)`` largest): the point must look like the keypoint to
  at least half of its examples. With one example it is that example's cycle confidence, so
  one-shot transfer is unchanged; with more, a point that comes back into half the examples keeps
  its confidence while one that comes back into none loses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

WEIGHT_FLOOR = 1e-6  # so that votes whose cycle confidences are all ~0 still have a mode
MEAN_SHIFT_STEPS = 8


def cycle_confidence(error: Tensor, tolerance: Tensor | float) -> Tensor:
    """``exp(-0.5 (error / tolerance)^2)``: 1 at no error, 0.61 at one tolerance, 0.14 at two."""
    return torch.exp(-0.5 * (error / tolerance) ** 2)


def weighted_mode(points: Tensor, weights: Tensor, bandwidth: Tensor | float) -> Tensor:
    """The densest place among weighted votes: the vote with the most Gaussian-weighted support,
    then a weighted mean shift from there.

    Args:
        points: (..., E, 2) votes.
        weights: (..., E) non-negative weights; a vote of weight 0 takes no part. Each row needs a
            positive weight somewhere.
        bandwidth: the Gaussian's standard deviation in the points' unit, a number or (...).
    Returns:
        (..., 2) the mode; ties in support go to the earlier vote.
    """
    weights = weights.to(points.dtype)
    bandwidth = torch.as_tensor(bandwidth, dtype=points.dtype, device=points.device).expand(weights.shape[:-1])
    distance = (points[..., :, None, :] - points[..., None, :, :]).norm(dim=-1)  # (..., E, E)
    support = (cycle_confidence(distance, bandwidth[..., None, None]) * weights[..., None, :]).sum(-1)
    support = torch.where(weights > 0, support, torch.full_like(support, -1.0))
    best = support.argmax(-1, keepdim=True)
    mode = torch.gather(points, -2, best[..., None].expand(*best.shape, 2)).squeeze(-2)
    for _ in range(MEAN_SHIFT_STEPS):
        kernel = weights * cycle_confidence((points - mode[..., None, :]).norm(dim=-1), bandwidth[..., None])
        mode = (kernel[..., None] * points).sum(-2) / kernel.sum(-1, keepdim=True).clamp(min=1e-30)
    return mode


def _weights(cycle: Tensor, voted: Tensor) -> Tensor:
    return torch.where(voted, cycle.clamp(min=WEIGHT_FLOOR), torch.zeros_like(cycle))


def vote_point(
    points: Tensor, cycle: Tensor, voted: Tensor, target_sides: Tensor, agreement_tolerance: float
) -> Tensor:
    """Each keypoint's point: the cycle-weighted mode of its votes (module docstring).

    Args:
        points: (B, E, K, 2) each example's vote in target pixels.
        cycle: (B, E, K) cycle confidence of each vote.
        voted: (B, E, K) bool, whether the example labels the keypoint (else its vote is ignored).
        target_sides: (B,) each target's longer side in pixels.
        agreement_tolerance: ``tau_a``, a fraction of the target's longer side.
    Returns:
        (B, K, 2) in target pixels (where no example votes: the mode of all votes, unweighted).
    """
    points, cycle, voted = points.transpose(1, 2).double(), cycle.transpose(1, 2).double(), voted.transpose(1, 2)
    weights = torch.where(voted.any(-1, keepdim=True), _weights(cycle, voted), torch.ones_like(cycle))
    bandwidth = agreement_tolerance * target_sides.double()[:, None]
    return weighted_mode(points, weights, bandwidth).to(torch.float32)


def majority_confidence(point_cycle: Tensor, voted: Tensor) -> Tensor:
    """The mean of the better half (rounded up) of the point's cycle confidences over the voters.

    Args:
        point_cycle: (B, E, K) the combined point's cycle confidence into each example.
        voted: (B, E, K) bool.
    Returns:
        (B, K); 0 where no example votes.
    """
    count = voted.sum(1)
    ranked = torch.where(voted, point_cycle, torch.full_like(point_cycle, -1.0)).sort(dim=1, descending=True).values
    half = (count + 1) // 2
    taken = torch.arange(voted.shape[1], device=voted.device)[None, :, None] < half[:, None, :]
    mean = (ranked * taken).sum(1) / half.clamp(min=1)
    return torch.where(count > 0, mean, torch.zeros_like(mean))


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


def combine_votes(
    points: Tensor,
    cycle: Tensor,
    voted: Tensor,
    point: Tensor,
    point_cycle: Tensor,
    target_sides: Tensor,
    agreement_tolerance: float,
) -> Votes:
    """The :class:`Votes` of each keypoint (module docstring).

    Args:
        points: (B, E, K, 2) each example's vote in target pixels (as :func:`vote_point`).
        cycle: (B, E, K) cycle confidence of each vote.
        voted: (B, E, K) bool, whether the example labels the keypoint.
        point: (B, K, 2) the combined point (:func:`vote_point`).
        point_cycle: (B, E, K) its cycle confidence into each example.
        target_sides: (B,) each target's longer side in pixels.
        agreement_tolerance: ``tau_a``, a fraction of the target's longer side.
    Returns:
        The keypoints' :class:`Votes`.
    """
    count = voted.sum(1)
    has = count > 0
    confidence = majority_confidence(point_cycle.double(), voted)
    points, cycle, voted = points.transpose(1, 2).double(), cycle.transpose(1, 2).double(), voted.transpose(1, 2)
    weights = _weights(cycle, voted)
    distance = (points - point.double()[..., None, :]).norm(dim=-1)
    agree = cycle_confidence(distance, agreement_tolerance * target_sides.double()[:, None, None])
    zero = torch.zeros_like(confidence)
    agreement = torch.where(has, (weights * agree).sum(-1) / weights.sum(-1).clamp(min=WEIGHT_FLOOR), zero)
    mean_cycle = torch.where(has, (cycle * voted).sum(-1) / count.clamp(min=1), zero)
    point = torch.where(has[..., None], point, torch.zeros_like(point))
    return Votes(point.float(), confidence.float(), agreement.float(), mean_cycle.float(), count)
