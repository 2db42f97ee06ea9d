"""Extraction at scale: images in, the feature store out, on one machine, under torchrun or on Ray.

    from semcorr.extract import extract_features
    extract_features("photos/", "photos-features", model="dinov2-b-reg", engine="local")

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "extract_features": "run",
    "ExtractSettings": "config",
    "RaySettings": "config",
    "ModelSpec": "config",
    "ENGINES": "config",
    "default_workers": "config",
    "ExtractReport": "report",
    "run_local": "local",
    "extract_batches": "local",
    "image_loader": "decode",
    "run_ray": "ray_engine",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
