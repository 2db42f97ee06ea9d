"""3D augmentation data: posed multi-view readers and exact correspondences between their views.

    from semcorr.threed import CO3D, RGBDFolders, make_pairs, select_frames
    sequence = RGBDFolders("data/livingroom").sequence("livingroom")
    views = [sequence.frames[i].load() for i in select_frames(len(sequence.frames))]
    for pairs in make_pairs(views):                   # frame 0 -> frames 1, 2, 3
        pairs.source_xy, pairs.target_xy              # (N, 2) pixels each

    from semcorr.threed import make_3d_pairs, open_3d_pairs
    make_3d_pairs("data/co3d", "co3d_pairs.h5")       # resumable HDF5 pair file
    dataset = open_3d_pairs("co3d_pairs.h5")          # len(dataset), dataset[i] -> ViewPair

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "CO3D": "co3d",
    "co3d_camera": "co3d",
    "Correspondences": "correspondence",
    "PairSettings": "correspondence",
    "lift": "correspondence",
    "make_pairs": "correspondence",
    "project": "correspondence",
    "select_frames": "correspondence",
    "thin": "correspondence",
    "make_3d_pairs": "generate",
    "open_views": "generate",
    "sequence_entry": "generate",
    "PairWriter": "pairfile",
    "SequenceEntry": "pairfile",
    "make_header": "pairfile",
    "read_pair_file_header": "pairfile",
    "PairFile": "pairloader",
    "ViewPair": "pairloader",
    "open_3d_pairs": "pairloader",
    "RGBDFolders": "rgbd",
    "read_rgbd_sequence": "rgbd",
    "PosedFrame": "views",
    "PosedSequence": "views",
    "PosedView": "views",
    "ViewDataset": "views",
    "k_from_integer_centres": "views",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
