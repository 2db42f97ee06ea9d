"""Backbones: DINOv2 (:mod:`.dinov2`), the weight-free dense SIFT baseline (:mod:`.baseline`) and
SDXL-Turbo's UNet features (:mod:`.sdxl`). Each is an :class:`~semcorr.features.Extractor` built
from its typed config (:mod:`semcorr.features.config`); presets live in :mod:`semcorr.features.registry`."""
