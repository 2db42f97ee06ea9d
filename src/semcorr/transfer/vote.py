"""Combining the votes of several examples into one point and one confidence per keypoint.

Each example ``e`` that labels keypoint ``k`` has a similarity map ``S_e`` over the target (its
descriptor of ``k`` against every target cell), and votes for a target point ``p_e`` (the map's
peak) with a cycle-consistency confidence ``q_e``: the target descriptor at ``p_e`` is matched back
into the example, and with ``c_e`` the distance (example pixels) from where it lands to the
example's own point, ``q_e = exp(-0.5 (c_e / (tau_c L_e))^2)``, ``L_e`` the example's longer side
(as video tracking, :mod:`semcorr.video.tracking`).

Rules for the point (``TransferSettings.vote``; EXPERIMENTAL: several are compared, see
notes/issue21):

* ``median``: the weighted geometric median of the votes (Weiszfeld), weights ``q_e``.
* ``mode``: the vote with the most weighted support within the agreement tolerance, refined by a
  weighted mean shift among its neighbours (mode seeking, not a compromise between clusters).
* ``summed``: the mean of the examples' similarity maps, then the matcher at its peak.
* ``weighted-summed``: the same with each map weighted by its vote's ``q_e``.
* ``mixture``: ``T log sum_e q_e softmax(S_e / T)`` (a mixture of the examples' match
  distributions), then the matcher at its peak.

Confidence (``TransferSettings.confidence``):

* ``agreement``: ``(1 / E_k) sum_e q_e a_e``, ``a_e = exp(-0.5 (|p_e - m| / (tau_a L_t))^2)`` the
  agreement of a vote with the combined point ``m``.
* ``cycle``: the combined point's own cycle confidence into each example, averaged over the ``E_k``
  examples that label the keypoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

WEIGHT_FLOOR = 1e-6  # so that votes whose cycle confidences are all ~0 still have a combination
POINT_RULES = ("median", "mode", "mode-unweighted")
MAP_RULES = ("summed", "weighted-summed", "mixture")
VOTE_RULES = POINT_RULES + MAP_RULES
CONFIDENCE_RULES = ("agreement", "cycle")


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


def weighted_mode(points: Tensor, weights: Tensor, bandwidth: Tensor, iterations: int = 8) -> Tensor:
    """The densest place among weighted votes: start at the vote with the most Gaussian-weighted
    support, then mean-shift.

    Args:
        points: (..., E, 2) votes.
        weights: (..., E) non-negative weights (each row needs a positive one).
        bandwidth: (...) or broadcastable, the Gaussian kernel's standard deviation in pixels.
    Returns:
        (..., 2)
    """
    weights = weights.to(points.dtype)
    scale = bandwidth[..., None, None]
    distance = (points[..., :, None, :] - points[..., None, :, :]).norm(dim=-1)  # (..., E, E)
    support = (torch.exp(-0.5 * (distance / scale) ** 2) * weights[..., None, :]).sum(-1)
    support = torch.where(weights > 0, support, torch.full_like(support, -1.0))
    best = support.argmax(-1, keepdim=True)
    mode = torch.gather(points, -2, best[..., None].expand(*best.shape, 2)).squeeze(-2)
    for _ in range(iterations):
        kernel = weights * torch.exp(-0.5 * ((points - mode[..., None, :]).norm(dim=-1) / bandwidth[..., None]) ** 2)
        mode = (kernel[..., None] * points).sum(-2) / kernel.sum(-1, keepdim=True).clamp(min=1e-30)
    return mode


def combine_maps(similarity: Tensor, weights: Tensor, rule: str, temperature: float) -> Tensor:
    """One similarity map per keypoint from the examples' maps.

    Args:
        similarity: (B, E, K, h, w) each example's map over the target.
        weights: (B, E, K) non-negative; an example of weight 0 takes no part (rows without any
            positive weight give a flat map).
        rule: ``summed`` / ``weighted-summed`` (weighted mean of the maps; the caller chooses the
            weights) or ``mixture`` (``T log sum_e w_e softmax(S_e / T)``, weights normalised).
    Returns:
        (B, K, h, w)
    """
    weights = weights.to(similarity.dtype)
    total = weights.sum(1).clamp(min=WEIGHT_FLOOR)  # (B, K)
    share = weights / total[:, None]
    if rule == "mixture":
        logits = similarity / temperature
        log_p = logits - logits.flatten(-2).logsumexp(-1)[..., None, None]
        log_share = torch.where(share > 0, share.log(), torch.full_like(share, float("-inf")))
        mixed = (log_p + log_share[..., None, None]).logsumexp(1)
        return temperature * torch.nan_to_num(mixed, neginf=-1e4)
    return torch.einsum("bek,bekhw->bkhw", share, similarity)


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


def vote_point(points: Tensor, cycle: Tensor, voted: Tensor, target_sides: Tensor, rule: str,
               agreement_tolerance: float) -> Tensor:
    """The ``median`` or ``mode`` of each keypoint's votes: (B, E, K, 2) votes -> (B, K, 2)."""
    points, cycle, voted = points.transpose(1, 2).double(), cycle.transpose(1, 2).double(), voted.transpose(1, 2)
    weights = torch.where(voted, cycle.clamp(min=WEIGHT_FLOOR), torch.zeros_like(cycle))
    weights = torch.where(voted.any(-1, keepdim=True), weights, torch.ones_like(weights))
    if rule == "median":
        return geometric_median(points, weights).float()
    if rule == "mode-unweighted":
        weights = torch.where(voted, torch.ones_like(weights), torch.zeros_like(weights))
        weights = torch.where(voted.any(-1, keepdim=True), weights, torch.ones_like(weights))
    bandwidth = agreement_tolerance * target_sides.double()[:, None].expand(weights.shape[:2])
    return weighted_mode(points, weights, bandwidth).float()


def combine_votes(points: Tensor, cycle: Tensor, voted: Tensor, target_sides: Tensor,
                  agreement_tolerance: float, combined: Tensor | None = None,
                  combined_cycle: Tensor | None = None) -> Votes:
    """Combine each keypoint's votes (module docstring).

    Args:
        points: (B, E, K, 2) each example's vote in target pixels.
        cycle: (B, E, K) cycle confidence of each vote.
        voted: (B, E, K) bool, whether the example labels the keypoint (else its vote is ignored).
        target_sides: (B,) each target's longer side in pixels.
        agreement_tolerance: ``tau_a``, a fraction of the target's longer side.
        combined: (B, K, 2) the combined point (default: the votes' geometric median).
        combined_cycle: (B, E, K) the combined point's cycle confidence into each example; given,
            the confidence is its mean over the voters (else the ``agreement`` rule).
    """
    if combined is None:
        combined = vote_point(points, cycle, voted, target_sides, "median", agreement_tolerance)
    points, cycle = points.transpose(1, 2).double(), cycle.transpose(1, 2).double()  # (B, K, E, ...)
    voted = voted.transpose(1, 2)
    median = combined.double()
    weights = torch.where(voted, cycle.clamp(min=WEIGHT_FLOOR), torch.zeros_like(cycle))
    count = voted.sum(-1)
    has = count > 0
    distance = (points - median[..., None, :]).norm(dim=-1)
    tolerance = agreement_tolerance * target_sides.double()[:, None, None]
    agree = torch.where(voted, cycle_confidence(distance, tolerance), torch.zeros_like(distance))
    votes = count.clamp(min=1)
    mass = (weights * agree).sum(-1)
    if combined_cycle is None:
        confidence = (cycle * agree * voted).sum(-1) / votes
    else:
        confidence = (combined_cycle.transpose(1, 2).double() * voted).sum(-1) / votes
    confidence = torch.where(has, confidence, torch.zeros_like(mass))
    agreement = torch.where(has, mass / weights.sum(-1).clamp(min=WEIGHT_FLOOR), torch.zeros_like(mass))
    mean_cycle = torch.where(has, (cycle * voted).sum(-1) / votes, torch.zeros_like(mass))
    median = torch.where(has[..., None], median, torch.zeros_like(median))
    return Votes(median.float(), confidence.float(), agreement.float(), mean_cycle.float(), count)
