"""Where model weights come from and how they are read, apart from the models that use them:
Hugging Face ids and local folders (:mod:`.hub`), the authors' released files of the MARCO,
DIY-SC and GECO presets (:mod:`.releases`), checkpoint files read without running anything in
them (:mod:`.safe_pickle`), and official DINOv2 ``.pth`` files (:mod:`.dinov2_checkpoint`).
Downloads themselves are :mod:`semcorr.download`. Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "looks_like_path": "hub",
    "resolve_pretrained": "hub",
    "Release": "releases",
    "RELEASES": "releases",
    "released_file": "releases",
    "read_release": "releases",
    "check_state": "releases",
    "read_checkpoint": "safe_pickle",
    "read_state_dict": "safe_pickle",
    "UnsafePickleError": "safe_pickle",
    "InertObject": "safe_pickle",
    "unreadable": "safe_pickle",
    "convert_official_state_dict": "dinov2_checkpoint",
    "load_official_checkpoint": "dinov2_checkpoint",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
