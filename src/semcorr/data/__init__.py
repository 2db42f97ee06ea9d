"""Benchmark loaders (every benchmark yields the same :class:`Pair` record), the benchmark
registry (:mod:`.benchmarks`: names, splits, thresholds), and the datasets' downloads
(:mod:`.catalog`, :mod:`.fetch`, :mod:`.verify`).

    from semcorr.data import download_dataset, load_spair
    pairs = load_spair(download_dataset("spair-71k", "data"), "test")

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "Pair": "pairs",
    "load_spair": "spair",
    "load_pf_willow": "pfwillow",
    "load_pf_pascal": "pfpascal",
    "load_cub": "cub",
    "load_ap10k": "ap10k_pairs",
    "BENCHMARKS": "benchmarks",
    "Benchmark": "benchmarks",
    "get_benchmark": "benchmarks",
    "load_benchmark": "benchmarks",
    "DATASETS": "catalog",
    "get_dataset": "catalog",
    "download_dataset": "install",
    "dataset_path": "fetch",
    "verify_dataset": "verify",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
