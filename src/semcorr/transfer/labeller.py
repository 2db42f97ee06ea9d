"""The core of keypoint transfer: examples' features once, then any number of target batches.

    labeller = KeypointLabeller(example_maps, points, labelled, TransferSettings())
    result = labeller.label(extractor.extract(targets))     # Labels: (B, K, 2) points, (B, K) confidence

Per target batch the cost is the targets' one feature extraction (done by the caller) plus
matching: every example's keypoint descriptors against every target (one batched product), each
match back into its example (cycle consistency), the votes' combination (:mod:`.vote`) and the
combined point matched back into every example (its confidence). With
``pose_align`` each (example, target) pair is first given the example's orientation whose mutual
nearest neighbours agree best with the target (:mod:`semcorr.matching.pose_align`); a mirrored example's
keypoint is looked up at its left/right partner's mirrored position (:mod:`.leftright`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..features.base import FeatureMap
from ..matching.kernels import sample_descriptors, similarity_maps
from ..matching.points import MatchSettings, locate
from ..matching.pose_align import choose_orientation, flip_points
from ..settings import ON_ERROR, OnError, check_bool, check_choice, check_int, check_number, fail
from .vote import Votes, combine_votes, cycle_confidence, vote_point


@dataclass(frozen=True)
class TransferSettings:
    """How keypoints are transferred from examples to other images.

    Attributes:
        match: point matching (grid, window soft-argmax, temperature), as ``semcorr match``.
        min_confidence: keypoints whose confidence is below this are written as not visible
            (``v = 0``, x = y = 0) rather than placed.
        cycle_tolerance: ``tau_c`` of the cycle confidence, a fraction of the example's longer side.
        agreement_tolerance: ``tau_a``, how close votes must be to support each other, a fraction of
            the target's longer side.
        batch_size: target images per feature extraction.
        pose_align: match from each example or its mirror image, whichever agrees better with the
            target, with left/right partners swapped (flip-aware transfer).
        on_error: an unreadable target image is reported and skipped (``skip``) or ends the run (``stop``).
    """

    match: MatchSettings = field(default_factory=MatchSettings)
    min_confidence: float = 0.5
    cycle_tolerance: float = 0.05
    agreement_tolerance: float = 0.05
    batch_size: int = 8
    pose_align: bool = False
    on_error: OnError = "skip"

    def __post_init__(self) -> None:
        if not isinstance(self.match, MatchSettings):
            raise fail(self, "match", "must be a MatchSettings")
        check_number(self, "min_confidence", minimum=0, maximum=1)
        check_number(self, "cycle_tolerance", above=0)
        check_number(self, "agreement_tolerance", above=0)
        check_int(self, "batch_size", minimum=1)
        check_bool(self, "pose_align")
        check_choice(self, "on_error", ON_ERROR)


@dataclass(frozen=True)
class Labels:
    """Keypoints found in B targets.

    Attributes:
        votes: the combined :class:`~semcorr.transfer.vote.Votes` ((B, K, 2) points, (B, K) confidence, ...).
        flipped: (B, E) bool, where example e was matched mirrored into target b (all False
            without pose alignment).
    """

    votes: Votes
    flipped: Tensor


def _repeat(fmap: FeatureMap, times: int, interleave: bool) -> FeatureMap:
    """A batch of ``times`` copies: ``[a, b, a, b]`` or, interleaved, ``[a, a, b, b]``."""
    if interleave:
        features = fmap.features.repeat_interleave(times, dim=0)
        geometries = tuple(g for g in fmap.geometries for _ in range(times))
    else:
        features = fmap.features.repeat(times, 1, 1, 1)
        geometries = fmap.geometries * times
    return FeatureMap(features, geometries, fmap.model, fmap.random_weights)


class KeypointLabeller:
    """Transfers the keypoints of E examples into target images.

    Args:
        examples: the examples' features on their native grid (E images; an image with two
            annotated objects appears twice).
        points: (E, K, 2) keypoints in the examples' pixels.
        labelled: (E, K) bool, the keypoints each example labels.
        settings: the transfer settings.
        flipped: the mirrored examples' features (needed with ``settings.pose_align``).
        partners: (K,) int64 left/right partner of each keypoint (default: each its own).
    """

    def __init__(
        self,
        examples: FeatureMap,
        points: Tensor,
        labelled: Tensor,
        settings: TransferSettings,
        *,
        flipped: FeatureMap | None = None,
        partners: Tensor | None = None,
    ) -> None:
        count, keypoints = labelled.shape
        if len(examples) != count or tuple(points.shape) != (count, keypoints, 2):
            raise ValueError(
                f"need E example maps, (E, K, 2) points and (E, K) labelled; got {len(examples)}, "
                f"{tuple(points.shape)} and {tuple(labelled.shape)}"
            )
        if settings.pose_align and flipped is None:
            raise ValueError("pose alignment needs the mirrored examples' features")
        self.settings = settings
        device = examples.features.device
        self.native = examples
        self.maps = examples.upsample(settings.match.grid)
        self.points = points.to(device, torch.float32)
        self.labelled = labelled.to(device, torch.bool)
        self.sides = torch.tensor([float(max(g.original_size)) for g in examples.geometries], device=device)
        self.descriptors = self._descriptors(self.maps, self.points)
        if settings.pose_align:
            assert flipped is not None  # refused above
            partners = torch.arange(keypoints) if partners is None else torch.as_tensor(partners)
            partners = partners.to(device, torch.int64)
            widths = torch.tensor([float(g.original_size[1]) for g in examples.geometries], device=device)
            self.flipped_native = flipped
            self.flipped_maps = flipped.upsample(settings.match.grid)
            self.flipped_points = flip_points(self.points[:, partners], widths[:, None])
            self.flipped_labelled = self.labelled[:, partners]
            self.flipped_descriptors = self._descriptors(self.flipped_maps, self.flipped_points)

    @staticmethod
    def _descriptors(maps: FeatureMap, points: Tensor) -> Tensor:
        """(E, K, C) descriptors at the (E, K, 2) pixel points."""
        grid = torch.stack([g.to_grid(p, maps.grid_size) for g, p in zip(maps.geometries, points)])
        return sample_descriptors(maps.features, grid)

    def _orientation(self, target: FeatureMap) -> Tensor:
        """(B, E) bool: where the mirrored example agrees better with the target (native grids)."""
        batch, count = len(target), len(self.native)
        if not self.settings.pose_align:
            return torch.zeros(batch, count, dtype=torch.bool, device=self.points.device)
        orientation = choose_orientation(
            _repeat(self.native, batch, False), _repeat(self.flipped_native, batch, False), _repeat(target, count, True)
        )
        return orientation.flipped.view(batch, count).to(self.points.device)

    def _pick(self, flipped: Tensor, original: Tensor, mirrored: Tensor | None) -> Tensor:
        """Per (target, example), the example's tensor in its chosen orientation: (B, E, ...)."""
        expanded = original.expand(flipped.shape[0], *original.shape)
        if mirrored is None:
            return expanded
        shape = flipped.shape + (1,) * (original.dim() - 1)
        return torch.where(flipped.view(shape), mirrored.expand_as(expanded), expanded)

    def _cycle(self, up: FeatureMap, found: Tensor, flipped: Tensor) -> Tensor:
        """(B, E, K) cycle confidence of target points (B, E, K, 2) on ``up``'s grid, each matched back
        into its example (in the example's chosen orientation)."""
        settings, mirrored = self.settings, self.settings.pose_align
        batch, (count, keypoints) = len(up), self.labelled.shape
        back_descriptors = sample_descriptors(up.features, found.reshape(batch, count * keypoints, 2))
        back_descriptors = back_descriptors.view(batch, count, keypoints, -1)
        back_similarity = torch.einsum("bekc,echw->bekhw", back_descriptors, self.maps.features)
        if mirrored:
            back_mirrored = torch.einsum("bekc,echw->bekhw", back_descriptors, self.flipped_maps.features)
            back_similarity = torch.where(flipped[..., None, None, None], back_mirrored, back_similarity)
        grid = self.maps.grid_size
        valid = self.maps.valid_cells().repeat(batch, 1, 1)
        back, _ = locate(back_similarity.reshape(batch * count, keypoints, *grid), settings.match, valid)
        back = torch.stack([self.maps.geometries[i % count].from_grid(p, grid) for i, p in enumerate(back)])
        start = self._pick(flipped, self.points, self.flipped_points if mirrored else None)
        error = (back.view(batch, count, keypoints, 2) - start).norm(dim=-1)
        return cycle_confidence(error, settings.cycle_tolerance * self.sides[None, :, None])

    def label(self, target: FeatureMap) -> Labels:
        """Find every example's keypoints in the B target images and combine the votes.

        Args:
            target: the targets' features on their native grid.
        """
        settings = self.settings
        flipped = self._orientation(target)
        batch, (count, keypoints) = len(target), self.labelled.shape
        mirrored = settings.pose_align
        up = target.upsample(settings.match.grid)
        queries = self._pick(flipped, self.descriptors, self.flipped_descriptors if mirrored else None)
        similarity = similarity_maps(queries.reshape(batch, count * keypoints, -1), up.features)
        found, _ = locate(similarity, settings.match, up.valid_cells())  # (B, E K, 2) target grid
        found = found.view(batch, count, keypoints, 2)
        cycle = self._cycle(up, found, flipped)
        voted = self._pick(flipped, self.labelled, self.flipped_labelled if mirrored else None)
        pixels = torch.stack([g.from_grid(p, up.grid_size) for g, p in zip(up.geometries, found)])
        target_sides = torch.tensor([float(max(g.original_size)) for g in target.geometries], device=found.device)
        point = vote_point(pixels, cycle, voted, target_sides, settings.agreement_tolerance)
        if count == 1:  # the point is the one vote: its cycle is the vote's
            point_cycle = cycle
        else:
            on_grid = torch.stack([g.to_grid(p, up.grid_size) for g, p in zip(up.geometries, point)])
            point_cycle = self._cycle(up, on_grid[:, None].expand(batch, count, keypoints, 2), flipped)
        votes = combine_votes(pixels, cycle, voted, point, point_cycle, target_sides, settings.agreement_tolerance)
        return Labels(votes, flipped)
