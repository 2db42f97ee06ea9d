"""3D augmentation data: posed multi-view readers and exact correspondences between their views.

    from semcorr.threed import CO3D, RGBDFolders, make_pairs, select_frames
    sequence = RGBDFolders("data/livingroom").sequence("livingroom")
    views = [sequence.frames[i].load() for i in select_frames(len(sequence.frames))]
    for pairs in make_pairs(views):                   # frame 0 -> frames 1, 2, 3
        pairs.source_xy, pairs.target_xy              # (N, 2) pixels each

    from semcorr.threed import make_3d_pairs, open_3d_pairs
    make_3d_pairs("data/co3d", "co3d_pairs.h5")       # resumable HDF5 pair file
    dataset = open_3d_pairs("co3d_pairs.h5")          # len(dataset), dataset[i] -> ViewPair
"""

from __future__ import annotations

from .co3d import CO3D, co3d_camera
from .correspondence import Correspondences, PairSettings, lift, make_pairs, project, select_frames, thin
from .generate import make_3d_pairs, open_views, sequence_entry
from .pairfile import PairWriter, SequenceEntry, make_header, read_header
from .pairloader import PairFile, ViewPair, open_3d_pairs
from .rgbd import RGBDFolders, read_rgbd_sequence
from .views import PosedFrame, PosedSequence, PosedView, ViewDataset, k_from_integer_centres

__all__ = [
    "CO3D", "Correspondences", "PairFile", "PairSettings", "PairWriter", "PosedFrame", "PosedSequence", "PosedView",
    "RGBDFolders", "SequenceEntry", "ViewDataset", "ViewPair", "co3d_camera", "k_from_integer_centres", "lift",
    "make_3d_pairs", "make_header", "make_pairs", "open_3d_pairs", "open_views", "project", "read_header", "read_rgbd_sequence",
    "select_frames", "sequence_entry", "thin",
]
