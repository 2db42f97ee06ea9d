"""Matching: pure tensor kernels, point transfer between feature maps, pose alignment, and the
:class:`Matcher` façade that goes from image files to matched points.

    from semcorr.matching import Matcher, MatchSettings
    Matcher(model="baseline").match("cat.jpg", "dog.jpg", [[120, 80]])

Modules: :mod:`.kernels` (similarity maps, nearest neighbours, soft-argmax), :mod:`.points`
(:class:`MatchSettings`, :func:`transfer_points`, :func:`locate`), :mod:`.pose_align` (the
mirrored-source choice of GeoAware-SC), :mod:`.matcher` (images in, points out). Names load on
first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "grid_to_normalized": "kernels",
    "sample_at_pixels": "kernels",
    "sample_descriptors": "kernels",
    "similarity_maps": "kernels",
    "nearest_neighbour": "kernels",
    "window_soft_argmax": "kernels",
    "kernel_soft_argmax": "kernels",
    "zeroed_window_soft_argmax": "kernels",
    "mutual_nearest_neighbours": "kernels",
    "MATCH_METHODS": "kernels",
    "MatchSettings": "points",
    "Transfer": "points",
    "transfer_points": "points",
    "locate": "points",
    "flip_image": "pose_align",
    "flip_points": "pose_align",
    "mutual_nn_distance": "pose_align",
    "Orientation": "pose_align",
    "choose_orientation": "pose_align",
    "align_sources": "pose_align",
    "Matcher": "matcher",
    "describe_image": "matcher",
    "match_images": "matcher",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
