"""The feature store: per-image fp16 features (and global embeddings), with two backends: a folder
(:class:`FeatureFolder`: crash-safe, resumable, filled by any number of processes) and memory
(:class:`MemoryFeatures`). Teacher caches, the evaluation cache (:class:`semcorr.eval.FeatureCache`)
and ``semcorr extract`` all write and read it.

Fill a folder with :func:`semcorr.extract.extract_features`
(``semcorr extract``, ``semcorr cache-teacher``). Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "FeatureFolder": "folder",
    "entry_name": "folder",
    "rank_of": "folder",
    "extractor_identity": "folder",
    "read_entry_header": "folder",
    "BackgroundWriter": "writer",
    "Entry": "writer",
    "MemoryFeatures": "memory",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
