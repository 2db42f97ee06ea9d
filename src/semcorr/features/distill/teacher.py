"""DistillDIFT's teacher: SDXL-Turbo and DINOv2-B-reg features of one image, side by side.

Each member sees the same original image, resized onto its own canvas (980x980 for SDXL-Turbo,
434x434 for DINOv2); both grids are 31x31 and cover the same image, so cell (i, j) of one is cell
(i, j) of the other. Each map is L2-normalised per location over its channels (the official
code normalised over the width axis, a defect fixed here), scaled by its teacher weight and
concatenated: (B, 1280 + 768, 31, 31). The :class:`FeatureMap` is then L2-normalised as every
extractor's is, so the teacher's cosine similarity of two cells is the mean of the members'
cosines weighted by the squared teacher weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import InputError
from ...geometry import ImageGeometry
from ..backbones.dinov2 import DinoV2Extractor
from ..backbones.sdxl.extractor import SdxlTurboExtractor
from ..base import Canvas, Extractor
from ..config import TeacherConfig

if TYPE_CHECKING:
    from ..backbones.dinov2 import DinoBackbone
    from ..backbones.sdxl.parts import SdxlComponents

# Largest disagreement, in grid cells, allowed between the members' cell centres on the original
# image. Square resizing gives 0; letterboxing rounds each canvas's padding to whole pixels.
GRID_TOLERANCE = 0.25


class EnsembleTeacher(Extractor):
    """SDXL-Turbo + DINOv2 features: (B, 2048, 31, 31) for the default members.

    ``extract(images, categories=[...])`` prompts SDXL-Turbo per image, as
    :class:`SdxlTurboExtractor` does.
    """

    prompted = True
    config: TeacherConfig

    def __init__(
        self,
        config: TeacherConfig = TeacherConfig(),
        *,
        random_weights: bool = False,
        name: str | None = None,
        sdxl_components: SdxlComponents | None = None,
        dino_backbone: DinoBackbone | None = None,
    ) -> None:
        """Build both members; ``sdxl_components`` / ``dino_backbone`` (e.g. tiny ones in tests)
        replace the released architectures and their weights."""
        super().__init__()
        self.name = name or "teacher"
        sdxl_config, dino_config = config.member_configs()
        self.config = dataclasses.replace(config, sdxl=sdxl_config, dino=dino_config)
        self.random_weights = random_weights
        self.sdxl = SdxlTurboExtractor(
            sdxl_config, random_weights=random_weights, name=f"{self.name}/sdxl-turbo", components=sdxl_components
        )
        self.dino = DinoV2Extractor(
            dino_config, random_weights=random_weights, name=f"{self.name}/dinov2", backbone=dino_backbone
        )
        if self.sdxl.grid_size() != self.dino.grid_size():
            raise InputError(
                f"{self.name}: SDXL-Turbo's grid {self.sdxl.grid_size()} at {sdxl_config.input_size} "
                f"differs from DINOv2's {self.dino.grid_size()} at {dino_config.input_size}; choose "
                "canvas sizes with equal grids (e.g. 980 and 434)"
            )

    def grid_size(self, input_size: int | None = None) -> tuple[int, int]:
        """(h, w) of the grid for a DINOv2 canvas side (default: the configured one)."""
        return self.dino.grid_size(input_size)

    def preparer(self) -> TeacherCanvases:
        """Each image once onto both members' canvases (:class:`TeacherCanvases`)."""
        return TeacherCanvases(
            Canvas(self.sdxl.config.input_size, self.sdxl.config.resize_mode),
            Canvas(self.dino.config.input_size, self.dino.config.resize_mode),
            self.grid_size(),
            self.name,
        )

    def forward(self, pixels: dict[str, Tensor] | Tensor) -> Tensor:
        """Both members' maps, each L2-normalised over channels and weighted, concatenated.

        Args:
            pixels: ``{"sdxl": (B, 3, S1, S1), "dino": (B, 3, S2, S2)}`` in [0, 1] (from
                :meth:`preprocess`); a single (B, 3, S, S) canvas is resized to each member's size.
        Returns:
            (B, C_sdxl + C_dino, h, w).
        """
        if isinstance(pixels, Tensor):
            pixels = {
                key: F.interpolate(
                    pixels, size=(member.config.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True
                ).clamp(0, 1)
                for key, member in (("sdxl", self.sdxl), ("dino", self.dino))
            }
        sdxl = F.normalize(self.sdxl(pixels["sdxl"], categories=self._categories).float(), dim=1)
        dino = F.normalize(self.dino(pixels["dino"]).float(), dim=1)
        weight_sdxl, weight_dino = self.config.teacher_weights
        return torch.cat([sdxl * weight_sdxl, dino * weight_dino], dim=1)


@dataclass(frozen=True)
class TeacherCanvases:
    """One image onto both members' canvases (picklable, no model inside).

    Returns ``{"sdxl": (3, 980, 980), "dino": (3, 434, 434)}`` in [0, 1] and DINOv2's geometry,
    which maps the shared grid to original pixels for both members.
    """

    sdxl: Canvas
    dino: Canvas
    grid: tuple[int, int]
    name: str

    def __call__(self, pixels: Tensor) -> tuple[dict[str, Tensor], ImageGeometry]:
        (sdxl, sdxl_geometry), (dino, dino_geometry) = self.sdxl(pixels), self.dino(pixels)
        _check_same_cells(sdxl_geometry, dino_geometry, self.grid, self.name)
        return {"sdxl": sdxl, "dino": dino}, dino_geometry


def _check_same_cells(first: ImageGeometry, second: ImageGeometry, grid: tuple[int, int], name: str) -> None:
    """Refuse canvases whose grids would put the same cell on different parts of the image."""
    corners = torch.tensor([[0.0, 0.0], [grid[1] - 1.0, grid[0] - 1.0]], dtype=torch.float64)
    a, b = first.from_grid(corners, grid), second.from_grid(corners, grid)
    cell = torch.tensor([first.original_size[1] / grid[1], first.original_size[0] / grid[0]], dtype=torch.float64)
    worst = float(((a - b).abs() / cell).max())
    if worst > GRID_TOLERANCE:
        raise InputError(
            f"{name}: the members' {grid[0]}x{grid[1]} grids disagree by {worst:.2f} cells on an image "
            f"of {first.original_size[1]}x{first.original_size[0]} pixels; use resize_mode='square'"
        )
