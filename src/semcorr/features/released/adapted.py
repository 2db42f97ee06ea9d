"""The base of the presets that adapt a frozen official DINOv2 with the authors' released weights
(MARCO, DIY-SC, GECO): the released file, the backbone, and the authors' Pillow resizing."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from torch import Tensor

from ...weights.releases import RELEASES, read_release
from ..backbones.dinov2 import DinoV2Extractor
from ..base import Canvas, Extractor
from ..config import PATCH_SIZE, AdaptedDinoConfig

if TYPE_CHECKING:
    from ..backbones.dinov2 import DinoBackbone


class AdaptedDinoExtractor(Extractor):
    """A DINOv2 backbone (``self.backbone``, a :class:`DinoV2Extractor`) plus a method's additions.

    Subclasses set ``RELEASE`` (a key of :data:`~semcorr.features.released.RELEASES`), ``RESAMPLE``
    (``bilinear`` or ``lanczos``) and ``PAD_VALUE``, then add their modules and load
    ``self.released`` (the state dict and its source, ``None`` with random weights).
    """

    RELEASE: ClassVar[str]
    RESAMPLE: ClassVar[str] = "bilinear"
    PAD_VALUE: ClassVar[float] = 0.5
    stride = PATCH_SIZE

    def __init__(
        self, config: AdaptedDinoConfig, *, random_weights: bool, name: str, backbone: DinoBackbone | None
    ) -> None:
        """Read the released file first (it names what is missing most precisely), then build the
        backbone from ``config.backbone`` unless ``backbone`` (a transformers DINOv2) is given."""
        super().__init__()
        self.name, self.config, self.random_weights = name, config, random_weights
        self.released: tuple[dict[str, Tensor], str] | None = None
        if not random_weights:
            self.released = read_release(
                RELEASES[self.RELEASE], config.weights, download=config.download, what=f"the {name} weights file"
            )
        self.backbone = DinoV2Extractor(
            config.backbone_config(),
            random_weights=random_weights,
            name=f"{name}/dinov2",
            backbone=backbone,
            weights_option="--backbone",
        )

    def preparer(self) -> Canvas:
        """Pillow on 8-bit RGB, as the authors' torchvision ``Resize`` / ``Image.resize``."""
        return Canvas(self.config.input_size, self.config.resize_mode, resample=self.RESAMPLE, pad_value=self.PAD_VALUE)
