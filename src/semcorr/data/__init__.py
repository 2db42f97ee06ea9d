"""Benchmark loaders: each yields :class:`Pair` records read from the benchmark's official layout.

    from semcorr.data import load_spair
    pairs = load_spair("data/SPair-71k", "test")       # 12,234 Pair records
    pairs[0].source_points, pairs[0].target_box         # (N, 2) and (4,) numpy arrays
"""

from __future__ import annotations

from .ap10k import load_ap10k
from .cub import load_cub
from .pairs import Pair
from .pfpascal import load_pf_pascal
from .pfwillow import load_pf_willow
from .spair import load_spair

__all__ = ["Pair", "load_ap10k", "load_cub", "load_pf_pascal", "load_pf_willow", "load_spair"]
