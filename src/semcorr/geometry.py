"""How a model's input canvas and feature grid relate to the original image's pixels.

Coordinates are continuous pixel coordinates ``(x, y)`` with the image covering
``[0, W] x [0, H]``: the centre of pixel (row r, column c) is at ``(c + 0.5, r + 0.5)``. Under
this convention resizing is a pure scale, which is also how the benchmarks' reference scripts
scale keypoints (``x * W' / W``).

A feature grid of ``h x w`` cells over an input canvas of ``H_in x W_in`` pixels has cell
``(i, j)`` centred at input pixel ``((j + 0.5) * W_in / w, (i + 0.5) * H_in / h)``. Grid
coordinates put cell centres at integers: cell ``(i, j)`` is at grid point ``(j, i)``. This holds
for any grid size, so features upsampled bilinearly (``align_corners=False``) keep their geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .settings import RESIZE_MODES, ResizeMode


@dataclass(frozen=True)
class ImageGeometry:
    """Maps points between an original image, the model's input canvas and any feature grid.

    Attributes:
        original_size: (H, W) of the original image in pixels.
        input_size: (H_in, W_in) of the model's input canvas in pixels.
        scale: (sx, sy), input pixels per original pixel along x and y.
        offset: (ox, oy), input-pixel position of the original image's top-left corner
            (non-zero only for letterbox padding).
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]
    scale: tuple[float, float]
    offset: tuple[float, float]

    @classmethod
    def fit(
        cls, original_size: tuple[int, int], input_size: int | tuple[int, int], mode: ResizeMode = "square"
    ) -> ImageGeometry:
        """The geometry of resizing an ``original_size`` (H, W) image onto an input canvas.

        ``square`` stretches the image to the canvas (the papers' protocol); ``letterbox`` keeps
        the aspect ratio, scales the longer side to the canvas and centres the image, padding
        the rest.
        """
        height, width = (int(v) for v in original_size)
        in_h, in_w = (input_size, input_size) if isinstance(input_size, int) else input_size
        if height <= 0 or width <= 0 or in_h <= 0 or in_w <= 0:
            raise ValueError(f"sizes must be positive, got original {original_size}, input {input_size}")
        if mode == "square":
            return cls((height, width), (in_h, in_w), (in_w / width, in_h / height), (0.0, 0.0))
        if mode == "letterbox":
            factor = min(in_w / width, in_h / height)
            content_w = min(in_w, max(1, round(width * factor)))
            content_h = min(in_h, max(1, round(height * factor)))
            return cls(
                (height, width),
                (in_h, in_w),
                (content_w / width, content_h / height),
                (float((in_w - content_w) // 2), float((in_h - content_h) // 2)),
            )
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")

    @property
    def content_size(self) -> tuple[int, int]:
        """(H, W) in input pixels of the area the image covers on the canvas."""
        return (round(self.original_size[0] * self.scale[1]), round(self.original_size[1] * self.scale[0]))

    def _affine(self, points: Tensor) -> tuple[Tensor, Tensor]:
        scale = torch.tensor(self.scale, dtype=points.dtype, device=points.device)
        offset = torch.tensor(self.offset, dtype=points.dtype, device=points.device)
        return scale, offset

    def to_input(self, points: Tensor) -> Tensor:
        """(..., 2) original-pixel (x, y) -> (..., 2) input-canvas pixels."""
        scale, offset = self._affine(points)
        return points * scale + offset

    def from_input(self, points: Tensor) -> Tensor:
        """(..., 2) input-canvas pixels -> (..., 2) original-pixel (x, y)."""
        scale, offset = self._affine(points)
        return (points - offset) / scale

    def _cell_size(self, grid_size: tuple[int, int], points: Tensor) -> Tensor:
        grid_h, grid_w = grid_size
        return torch.tensor(
            (self.input_size[1] / grid_w, self.input_size[0] / grid_h), dtype=points.dtype, device=points.device
        )

    def to_grid(self, points: Tensor, grid_size: tuple[int, int]) -> Tensor:
        """(..., 2) original-pixel (x, y) -> (..., 2) grid coordinates on an (h, w) grid."""
        return self.to_input(points) / self._cell_size(grid_size, points) - 0.5

    def from_grid(self, points: Tensor, grid_size: tuple[int, int]) -> Tensor:
        """(..., 2) grid coordinates on an (h, w) grid -> (..., 2) original-pixel (x, y)."""
        return self.from_input((points + 0.5) * self._cell_size(grid_size, points))

    def valid_cells(self, grid_size: tuple[int, int]) -> Tensor:
        """(h, w) bool: True where a cell's centre lies on the image rather than on padding."""
        grid_h, grid_w = grid_size
        ys = torch.arange(grid_h, dtype=torch.float64)
        xs = torch.arange(grid_w, dtype=torch.float64)
        centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2)
        original = self.from_grid(centres, grid_size)
        height, width = self.original_size
        inside_x = (original[..., 0] >= 0) & (original[..., 0] <= width)
        inside_y = (original[..., 1] >= 0) & (original[..., 1] <= height)
        return inside_x & inside_y


def resize_onto_canvas(image: Tensor, geometry: ImageGeometry, pad_value: float = 0.5) -> Tensor:
    """Resize a (3, H, W) image in [0, 1] onto its (3, H_in, W_in) input canvas.

    Bilinear with antialiasing; letterbox padding is filled with ``pad_value`` (mid grey).
    """
    content_h, content_w = geometry.content_size
    resized = torch.nn.functional.interpolate(
        image[None], size=(content_h, content_w), mode="bilinear", align_corners=False, antialias=True
    )[0].clamp_(0.0, 1.0)
    in_h, in_w = geometry.input_size
    if (content_h, content_w) == (in_h, in_w):
        return resized
    canvas = image.new_full((image.shape[0], in_h, in_w), pad_value)
    top, left = int(geometry.offset[1]), int(geometry.offset[0])
    canvas[:, top : top + content_h, left : left + content_w] = resized
    return canvas
