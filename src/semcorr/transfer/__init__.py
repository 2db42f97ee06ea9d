"""Label transfer: annotate a few images, and semcorr annotates the rest.

    from semcorr.transfer import transfer_keypoints, dense_warp
    transfer_keypoints("examples.json", "cats/", "labels.json", model="baseline")   # COCO keypoints
    warp = dense_warp("a.jpg", "b.jpg", model="baseline")     # every pixel of B's match in A

Examples are read by :mod:`.examples`, their votes combined by :mod:`.vote`, targets labelled by
:mod:`.labeller` and a folder by :mod:`.keypoints` (resumable, :mod:`.resume`; COCO out, :mod:`.coco`;
pictures, :mod:`.sheet`); left/right partners for flip-aware transfer come from :mod:`.leftright`,
dense warps from :mod:`.warp`. Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "Example": "examples",
    "ExampleSet": "examples",
    "KeypointCategory": "examples",
    "read_examples": "examples",
    "coco_document": "coco",
    "left_right_partners": "leftright",
    "Votes": "vote",
    "combine_votes": "vote",
    "vote_point": "vote",
    "weighted_mode": "vote",
    "KeypointLabeller": "labeller",
    "Labels": "labeller",
    "TransferSettings": "labeller",
    "example_labeller": "keypoints",
    "transfer_keypoints": "keypoints",
    "DenseWarp": "warp",
    "WarpSettings": "warp",
    "dense_warp": "warp",
    "run_warp": "warp",
    "warp_features": "warp",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
