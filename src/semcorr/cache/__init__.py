"""Teacher-feature caches: per-image fp16 features in a folder, resumable, crash-safe, multi-rank.

Read with :class:`TeacherCache`; fill with :func:`cache_teacher` or ``semcorr cache-teacher``.
"""

from __future__ import annotations

from .run import CacheReport, ImageItem, cache_teacher, list_images, resolve_rank, teacher_identity
from .store import TeacherCache, entry_name, rank_of

__all__ = ["CacheReport", "ImageItem", "TeacherCache", "cache_teacher", "entry_name", "list_images", "rank_of",
           "resolve_rank", "teacher_identity"]
