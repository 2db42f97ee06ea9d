"""Teacher-feature caches: per-image fp16 features in a folder, resumable, crash-safe, multi-rank.

Read with :class:`TeacherCache`; fill with :func:`cache_teacher` or ``semcorr cache-teacher``.
Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {"CacheReport": "run", "cache_teacher": "run", "teacher_identity": "run",
            "TeacherCache": "store", "entry_name": "store", "rank_of": "store"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
