"""The feature contract: every extractor maps images to a :class:`FeatureMap`.

Everything downstream (matching, evaluation, video, segmentation) is written once against this
contract, whatever the model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, InputError
from ..geometry import ImageGeometry, resize_onto_canvas
from ..images import ImageInput, image_name, load_image, warn_if_small
from .config import ExtractorConfig

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class FeatureMap:
    """Dense features of a batch of images, and how their grid maps to the images' pixels.

    Attributes:
        features: (B, C, h, w) float32, L2-normalised over C.
        geometries: one :class:`ImageGeometry` per image, mapping grid cells to original pixels.
        model: the name of the extractor that produced the features.
        random_weights: True when the extractor had random weights (features carry no meaning).
        norms: (B, 1, h, w) float32, the L2 norm of each cell's raw feature (the model's output before
            normalisation), or ``None`` (features resampled to another grid, or made elsewhere).
            ``features * norms`` is the raw output (:meth:`raw_features`): what protocols that match
            raw dot products (MARCO) or resample raw features (GECO) need.
    """

    features: Tensor
    geometries: tuple[ImageGeometry, ...]
    model: str
    random_weights: bool = False
    norms: Tensor | None = None

    def __post_init__(self) -> None:
        if self.features.ndim != 4:
            raise ValueError(f"features must be (B, C, h, w), got shape {tuple(self.features.shape)}")
        if len(self.geometries) != self.features.shape[0]:
            raise ValueError(f"{len(self.geometries)} geometries for a batch of {self.features.shape[0]}")
        if self.norms is not None and tuple(self.norms.shape) != (self.features.shape[0], 1, *self.features.shape[2:]):
            raise ValueError(f"norms must be (B, 1, h, w) = {(len(self), 1, *self.grid_size)}, "
                             f"got {tuple(self.norms.shape)}")

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index: int | slice) -> "FeatureMap":
        """The feature map of one image (kept as a batch of 1) or of a slice of the batch."""
        index = slice(index, index + 1 if index != -1 else None) if isinstance(index, int) else index
        norms = self.norms[index] if self.norms is not None else None
        return FeatureMap(self.features[index], self.geometries[index], self.model, self.random_weights, norms)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) of the feature grid."""
        return (self.features.shape[2], self.features.shape[3])

    @property
    def channels(self) -> int:
        return self.features.shape[1]

    def raw_features(self) -> Tensor:
        """(B, C, h, w) the model's raw output, ``features * norms``.

        Raises:
            ValueError: the map carries no norms (resampled, or made without them).
        """
        if self.norms is None:
            raise ValueError(f"{self.model}: this feature map carries no raw norms (resampled to another grid, or "
                             "made without them); use the native-grid map from Extractor.extract")
        return self.features * self.norms

    def upsample(self, size: int | tuple[int, int] | None) -> "FeatureMap":
        """Bilinearly upsample (or downsample) to an (h, w) grid and re-normalise; geometry is kept.

        ``None`` or the current size returns ``self``; a resampled map carries no ``norms``.
        """
        if size is None:
            return self
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size == self.grid_size:
            return self
        resized = F.interpolate(self.features, size=size, mode="bilinear", align_corners=False)
        return FeatureMap(F.normalize(resized, dim=1), self.geometries, self.model, self.random_weights)

    def valid_cells(self) -> Tensor:
        """(B, h, w) bool: cells whose centres lie on the image rather than on letterbox padding."""
        return torch.stack([g.valid_cells(self.grid_size) for g in self.geometries]).to(self.features.device)


class Extractor(nn.Module):
    """Base class: images in, :class:`FeatureMap` out.

    Subclasses set ``name`` and ``config`` and implement :meth:`forward`, which maps a batch of
    input canvases (B, 3, S, S) in [0, 1] to raw features (B, C, h, w). Normalisation, resizing,
    geometry, precision and ``torch.inference_mode`` are handled here, once.
    """

    name: str = "extractor"
    config: ExtractorConfig
    random_weights: bool = False
    stride: int = 14  # input pixels per feature cell

    def forward(self, pixels: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        tensor = next(self.parameters(), None)
        if tensor is None:
            tensor = next(self.buffers(), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def grid_size(self, input_size: int | None = None) -> tuple[int, int]:
        """(h, w) of the feature grid for a square input canvas (default: the configured size).

        The default assumes one cell per ``self.stride`` input pixels; extractors whose grid
        follows another rule override this.
        """
        side = input_size or self.config.input_size
        return (side // self.stride, side // self.stride)

    def preprocess(self, images: Sequence[ImageInput]) -> tuple[Tensor, tuple[ImageGeometry, ...]]:
        """Load images and resize them onto input canvases.

        Returns:
            (B, 3, S, S) float32 in [0, 1] on the extractor's device, and one geometry per image.
        """
        canvases, geometries = [], []
        for image in images:
            pixels = load_image(image)
            warn_if_small(pixels, image, self.config.input_size)
            geometry = ImageGeometry.fit(tuple(pixels.shape[-2:]), self.config.input_size, self.config.resize_mode)
            canvases.append(self.resize(pixels, geometry))
            geometries.append(geometry)
        return torch.stack(canvases).to(self.device), tuple(geometries)

    def resize(self, pixels: Tensor, geometry: ImageGeometry) -> Tensor:
        """(3, H, W) image in [0, 1] -> (3, H_in, W_in) input canvas; extractors reproducing their
        authors' resizing override this (default: :func:`~semcorr.geometry.resize_onto_canvas`)."""
        return resize_onto_canvas(pixels, geometry)

    def extract(self, images: ImageInput | Sequence[ImageInput], *, grad: bool = False) -> FeatureMap:
        """Features of one image or a batch of images.

        Args:
            images: a path, PIL image, (3, H, W) tensor, or a list of them.
            grad: keep the autograd graph (for training); by default runs under ``torch.inference_mode``.
        Returns:
            a :class:`FeatureMap` with (B, C, h, w) features.
        """
        batch = [images] if not isinstance(images, (list, tuple)) else list(images)
        if not batch:
            raise ValueError("extract() needs at least one image")
        pixels, geometries = self.preprocess(batch)
        with (contextlib.nullcontext() if grad else torch.inference_mode()), self._autocast():
            features = self(pixels)
        if not torch.isfinite(features).all():
            names = ", ".join(image_name(image) for image in batch[:3]) + (" ..." if len(batch) > 3 else "")
            raise InputError(f"{self.name}: the model gave non-finite features (NaN or inf) for {names}; its weights "
                             f"are broken, or {self.config.precision} overflowed (try --precision fp32)")
        features = features.float()
        norms = torch.linalg.vector_norm(features, dim=1, keepdim=True)
        return FeatureMap(F.normalize(features, dim=1), geometries, self.name, self.random_weights, norms)

    def _autocast(self) -> contextlib.AbstractContextManager:
        precision = self.config.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[precision])


def require_finite(tensors: Mapping[str, Tensor], source: str) -> None:
    """Refuse weights with a NaN or infinite value: a :class:`CheckpointError` naming ``source`` and the tensor."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{source}: {name} holds non-finite values (NaN or inf); these weights are broken "
                                  "(a diverged training run?)")
