"""semcorr: semantic correspondence with DINOv2, diffusion teachers and their distilled student."""

from __future__ import annotations

from .errors import CheckpointError, InputError, SemcorrError, WeightsUnavailableError
from .features import FeatureMap, build_extractor
from .geometry import ImageGeometry
from .images import load_image
from .matcher import Matcher, MatchSettings, transfer_points

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "FeatureMap", "ImageGeometry", "InputError", "MatchSettings", "Matcher",
    "SemcorrError", "WeightsUnavailableError", "build_extractor", "load_image", "transfer_points",
]
