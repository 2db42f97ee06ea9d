"""semcorr: semantic correspondence with DINOv2, diffusion teachers and their distilled student.

    from semcorr import Matcher
    Matcher().match("cat.jpg", "dog.jpg", [[120, 80]])

Names load on first use, so ``import semcorr`` is instant (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from ._lazy import lazy_namespace
from ._moved import install as _install_moved_paths

__version__ = "0.1.0"

_EXPORTS = {
    "CheckpointError": "errors",
    "InputError": "errors",
    "SemcorrError": "errors",
    "SettingError": "errors",
    "WeightsUnavailableError": "errors",
    "DownloadError": "errors",
    "FeatureMap": "features.base",
    "build_extractor": "features.registry",
    "ImageGeometry": "geometry",
    "load_image": "images",
    "MatchSettings": "matching.points",
    "transfer_points": "matching.points",
    "Matcher": "matching.matcher",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
_install_moved_paths()  # old import paths keep working for a release (semcorr._moved)
