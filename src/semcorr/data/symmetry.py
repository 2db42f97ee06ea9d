"""Left/right mirror partners of benchmark keypoints, for pose alignment.

In the mirror image of an animal or a car, the part that looks like its left eye is the original's
right eye. When pose alignment (:mod:`semcorr.matching.pose_align`) matches from the mirrored source, a
keypoint must therefore be looked up at its partner's mirrored position: DistillDIFT and GeoAware-SC
do this for SPair-71k (and GeoAware-SC for AP-10K) and their pose-aligned figures depend on it.

The partner pairs, as keypoint indices of each benchmark's own lists:

* SPair-71k: the per-category pairs of DistillDIFT's ``SPAIR_FLIP`` table (``utils/distillation.py``
  of joh-schb/distilldift, the same as GeoAware-SC's), written here as index pairs; indices not
  listed are their own partners (a nose, a tail).
* AP-10K: from its keypoint names (left_eye, right_eye, nose, neck, root_of_tail, left_shoulder,
  left_elbow, left_front_paw, right_shoulder, right_elbow, right_front_paw, left_hip, left_knee,
  left_back_paw, right_hip, right_knee, right_back_paw).
* CUB-200-2011: from ``parts.txt`` (back, beak, belly, breast, crown, forehead, left eye, left leg,
  left wing, nape, right eye, right leg, right wing, tail, throat), 0-based.

Other benchmarks (PF-WILLOW, PF-PASCAL) have no left/right labels: every keypoint is its own partner.
"""

from __future__ import annotations

import numpy as np

from .pairs import Pair

IndexPairs = tuple[tuple[int, int], ...]

SPAIR_MIRROR_PAIRS: dict[str, IndexPairs] = {
    "aeroplane": ((4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17), (18, 19), (20, 21)),
    "bicycle": ((2, 3), (6, 7), (9, 10)),
    "bird": ((1, 2), (4, 5), (7, 8), (10, 11), (12, 13), (14, 15)),
    "boat": ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)),
    "bottle": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)),
    "bus": (
        (0, 1),
        (2, 3),
        (5, 6),
        (8, 18),
        (11, 21),
        (9, 19),
        (12, 22),
        (10, 20),
        (13, 23),
        (14, 15),
        (24, 25),
        (16, 17),
        (26, 27),
    ),
    "car": (
        (0, 1),
        (2, 3),
        (6, 7),
        (10, 20),
        (13, 23),
        (11, 21),
        (14, 24),
        (12, 22),
        (15, 25),
        (16, 17),
        (26, 27),
        (18, 19),
        (28, 29),
    ),
    "cat": ((0, 1), (2, 3), (4, 5), (6, 7), (9, 10), (11, 12)),
    "chair": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13)),
    "cow": ((0, 1), (2, 3), (4, 5), (6, 7), (9, 10), (11, 12), (15, 16), (17, 18), (19, 20)),
    "dog": ((0, 1), (2, 3), (4, 5), (9, 10), (11, 12)),
    "horse": ((0, 1), (2, 3), (4, 5), (6, 7), (10, 11), (12, 13), (16, 17), (18, 19)),
    "motorbike": ((0, 1), (2, 3)),
    "person": ((0, 1), (2, 3), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17), (18, 19)),
    "pottedplant": ((0, 2), (4, 5), (6, 8)),
    "sheep": ((0, 1), (2, 3), (4, 5), (6, 7), (9, 10), (11, 12), (15, 16), (17, 18), (19, 20)),
    "train": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17)),
    "tvmonitor": ((0, 2), (4, 6), (3, 7), (8, 10), (12, 14), (11, 15)),
}
AP10K_MIRROR_PAIRS: IndexPairs = ((0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16))
CUB_MIRROR_PAIRS: IndexPairs = ((6, 10), (7, 11), (8, 12))


def mirror_pairs(benchmark: str, category: str) -> IndexPairs:
    """The (left, right) keypoint-index pairs of a benchmark's category; ``()`` where none are known."""
    if benchmark == "spair":
        return SPAIR_MIRROR_PAIRS.get(category, ())
    if benchmark.startswith("ap10k"):
        return AP10K_MIRROR_PAIRS
    if benchmark == "cub":
        return CUB_MIRROR_PAIRS
    return ()


def mirror_partner_rows(pair: Pair) -> np.ndarray:
    """For each counted keypoint of ``pair`` (:meth:`Pair.counted_points` order), the row whose
    source point is its partner's: a keypoint whose partner is also counted takes the partner's
    row, every other keypoint its own (as DistillDIFT: swap only where both are visible).

    Returns:
        (M,) int64 row indices into the counted keypoints, a permutation of ``range(M)``.
    """
    ids = [int(i) for i in pair.keypoint_ids[pair.visible]]
    row_of = {keypoint: row for row, keypoint in enumerate(ids)}
    partner = {}
    for left, right in mirror_pairs(pair.benchmark, pair.category):
        if left in row_of and right in row_of:
            partner[left], partner[right] = right, left
    return np.asarray([row_of[partner.get(keypoint, keypoint)] for keypoint in ids], dtype=np.int64)
