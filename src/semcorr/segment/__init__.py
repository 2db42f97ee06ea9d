"""Zero-shot foreground segmentation: k-means on features (:mod:`.masks`), refined at pixel level by
colour (:mod:`.refine`).

    from semcorr.segment import segment_images
    masks = segment_images(["cat.jpg"], model="student")      # (H, W) bool each

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "SegmentSettings": "masks",
    "enclosed_background": "masks",
    "foreground_margin": "masks",
    "kmeans": "masks",
    "masks_of": "masks",
    "run_segment": "masks",
    "save_mask": "masks",
    "segment_images": "masks",
    "colour_log_ratio": "refine",
    "refine_mask": "refine",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
