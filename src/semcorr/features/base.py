"""The feature contract: every extractor maps images to a :class:`FeatureMap`.

Everything downstream (matching, evaluation, video, segmentation) is written once against this
contract, whatever the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._moved import renamed_names
from ..errors import CheckpointError, InputError
from ..geometry import ImageGeometry, resize_onto_canvas
from ..images import ImageInput, image_name, load_image, pil_canvas, warn_if_small
from ..settings import ResizeMode
from .config import ExtractorConfig

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

Pixels = Tensor | dict[str, Tensor]  # one canvas (B, 3, S, S), or one per member (the teacher)
Preparer = Callable[[Tensor], tuple[Pixels, ImageGeometry]]  # (3, H, W) image -> canvas(es) (no batch), geometry


@dataclass(frozen=True)
class Canvas:
    """How an image becomes a model input: resized onto a square canvas of ``input_size`` pixels.

    A small picklable value (no model inside), so data-loading worker processes and Ray tasks can
    prepare images while the model runs elsewhere.

    Attributes:
        input_size, resize_mode: the canvas (:meth:`ImageGeometry.fit`).
        resample: ``None``: torch's antialiased bilinear resize, letterbox padding mid grey
            (:func:`~semcorr.geometry.resize_onto_canvas`); or a Pillow filter (``bilinear``,
            ``lanczos``) on 8-bit RGB, padding ``pad_value``, as some authors' scripts resize
            (:func:`~semcorr.images.pil_canvas`).
        pad_value: the letterbox padding of a Pillow resize.
    """

    input_size: int
    resize_mode: ResizeMode = "square"
    resample: str | None = None
    pad_value: float = 0.0

    def __call__(self, pixels: Tensor) -> tuple[Tensor, ImageGeometry]:
        """(3, H, W) image in [0, 1] -> (3, S, S) canvas and its geometry."""
        geometry = ImageGeometry.fit((pixels.shape[-2], pixels.shape[-1]), self.input_size, self.resize_mode)
        if self.resample is None:
            return resize_onto_canvas(pixels, geometry), geometry
        return pil_canvas(pixels, geometry, self.resample, pad_value=self.pad_value), geometry


def stack_pixels(canvases: Sequence[Pixels]) -> Pixels:
    """Per-image canvases (3, S, S) (or dicts of them) -> a batch (B, 3, S, S) (or a dict of batches)."""
    # one preparer made them all: all dicts, or all tensors
    if isinstance(canvases[0], dict):
        dicts = cast("Sequence[dict[str, Tensor]]", canvases)
        return {key: torch.stack([canvas[key] for canvas in dicts]) for key in dicts[0]}
    return torch.stack(list(cast("Sequence[Tensor]", canvases)))


def pixels_to(pixels: Pixels, device: torch.device, *, non_blocking: bool = False) -> Pixels:
    """A batch of canvases moved to ``device`` (``non_blocking`` from pinned memory on CUDA)."""
    if isinstance(pixels, dict):
        return {key: value.to(device, non_blocking=non_blocking) for key, value in pixels.items()}
    return pixels.to(device, non_blocking=non_blocking)


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
        embeddings: (B, D) float32 global embeddings, L2-normalised (the class token, or the mean of
            the cells: :attr:`Extractor.embedding_kind`), when asked for; else ``None``.
    """

    features: Tensor
    geometries: tuple[ImageGeometry, ...]
    model: str
    random_weights: bool = False
    norms: Tensor | None = None
    embeddings: Tensor | None = None

    def __post_init__(self) -> None:
        if self.features.ndim != 4:
            raise ValueError(f"features must be (B, C, h, w), got shape {tuple(self.features.shape)}")
        if len(self.geometries) != self.features.shape[0]:
            raise ValueError(f"{len(self.geometries)} geometries for a batch of {self.features.shape[0]}")
        if self.norms is not None and tuple(self.norms.shape) != (self.features.shape[0], 1, *self.features.shape[2:]):
            raise ValueError(
                f"norms must be (B, 1, h, w) = {(len(self), 1, *self.grid_size)}, got {tuple(self.norms.shape)}"
            )
        if self.embeddings is not None and tuple(self.embeddings.shape[:1]) != (self.features.shape[0],):
            raise ValueError(f"embeddings must be (B, D), got shape {tuple(self.embeddings.shape)}")

    def __len__(self) -> int:
        return self.features.shape[0]

    @classmethod
    def join(cls, maps: Sequence[FeatureMap]) -> FeatureMap:
        """One batch of the images of ``maps`` (one model's, on one grid), in order; norms and
        embeddings kept where every map has them."""
        norms = [m.norms for m in maps if m.norms is not None]
        embeddings = [m.embeddings for m in maps if m.embeddings is not None]
        return cls(
            torch.cat([m.features for m in maps]),
            tuple(g for m in maps for g in m.geometries),
            maps[0].model,
            maps[0].random_weights,
            norms=torch.cat(norms) if len(norms) == len(maps) else None,
            embeddings=torch.cat(embeddings) if len(embeddings) == len(maps) else None,
        )

    def __getitem__(self, index: int | slice) -> FeatureMap:
        """The feature map of one image (kept as a batch of 1) or of a slice of the batch."""
        index = slice(index, index + 1 if index != -1 else None) if isinstance(index, int) else index
        norms = self.norms[index] if self.norms is not None else None
        embeddings = self.embeddings[index] if self.embeddings is not None else None
        return FeatureMap(
            self.features[index],
            self.geometries[index],
            self.model,
            self.random_weights,
            norms=norms,
            embeddings=embeddings,
        )

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
            raise ValueError(
                f"{self.model}: this feature map carries no raw norms (resampled to another grid, or "
                "made without them); use the native-grid map from Extractor.extract"
            )
        return self.features * self.norms

    def upsample(self, size: int | tuple[int, int] | None) -> FeatureMap:
        """Bilinearly upsample (or downsample) to an (h, w) grid and re-normalise; geometry is kept.

        ``None`` or the current size returns ``self``; a resampled map carries no ``norms``.
        """
        if size is None:
            return self
        target = (size, size) if isinstance(size, int) else tuple(size)
        if target == self.grid_size:
            return self
        resized = F.interpolate(self.features, size=target, mode="bilinear", align_corners=False)
        return FeatureMap(
            F.normalize(resized, dim=1), self.geometries, self.model, self.random_weights, embeddings=self.embeddings
        )

    def valid_cells(self) -> Tensor:
        """(B, h, w) bool: cells whose centres lie on the image rather than on letterbox padding."""
        return torch.stack([g.valid_cells(self.grid_size) for g in self.geometries]).to(self.features.device)


class Extractor(nn.Module):
    """Base class: images in, :class:`FeatureMap` out.

    Subclasses set ``name`` and ``config`` and implement :meth:`forward`, which maps a batch of
    input canvases (B, 3, S, S) in [0, 1] to raw features (B, C, h, w). Normalisation, resizing,
    geometry, precision and ``torch.inference_mode`` are handled here, once.

    Extraction is two steps, so images can be prepared elsewhere (data-loading workers, Ray tasks)
    while the model runs: :meth:`preparer` turns one image into its canvas and geometry, and
    :meth:`extract_prepared` runs the model on a batch of canvases. :meth:`extract` does both.
    """

    name: str = "extractor"
    config: ExtractorConfig
    random_weights: bool = False
    stride: int = 14  # input pixels per feature cell
    prompted: bool = False  # forward() reads self._categories: one text prompt category per image
    embedding_kind: str = "mean of the cells"  # what forward_with_embedding's global embedding is
    _categories: list[str | None] | None = None

    def forward(self, pixels: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_with_embedding(self, pixels: Pixels) -> tuple[Tensor, Tensor]:
        """Raw features (B, C, h, w) and a global embedding (B, D) per image (not normalised).

        The default embedding is the mean of the L2-normalised cells; extractors with a class
        token override this to return it from the same forward pass.
        """
        features = self(pixels)
        return features, F.normalize(features.float(), dim=1).mean(dim=(2, 3))

    @property
    def device(self) -> torch.device:
        tensor: Tensor | None = next(self.parameters(), None)
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

    def preparer(self) -> Preparer:
        """What turns one loaded (3, H, W) image into this model's input canvas and geometry: a
        small picklable callable that holds no model (see :class:`Canvas`)."""
        return Canvas(self.config.input_size, self.config.resize_mode)

    def preprocess(self, images: Sequence[ImageInput]) -> tuple[Pixels, tuple[ImageGeometry, ...]]:
        """Load images and resize them onto input canvases (:meth:`preparer`).

        Returns:
            (B, 3, S, S) float32 in [0, 1] on the extractor's device (the teacher: a dict of such
            batches, one per member), and one geometry per image.
        """
        prepare = self.preparer()
        prepared = []
        for image in images:
            pixels = load_image(image)
            warn_if_small(pixels, image, self.config.input_size)
            prepared.append(prepare(pixels))
        return pixels_to(stack_pixels([p for p, _ in prepared]), self.device), tuple(g for _, g in prepared)

    def extract(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        grad: bool = False,
        categories: Sequence[str | None] | None = None,
    ) -> FeatureMap:
        """Features of one image or a batch of images.

        Args:
            images: a path, PIL image, (3, H, W) tensor, or a list of them.
            grad: keep the autograd graph (for training); by default runs under ``torch.inference_mode``.
            categories: prompted models only (:attr:`prompted`): one category (or ``None``) per image.
        Returns:
            a :class:`FeatureMap` with (B, C, h, w) features.
        """
        batch = list(images) if isinstance(images, (list, tuple)) else [cast(ImageInput, images)]  # a str is one image
        if not batch:
            raise ValueError("extract() needs at least one image")
        pixels, geometries = self.preprocess(batch)
        return self.extract_prepared(
            pixels, geometries, grad=grad, categories=categories, names=[image_name(image) for image in batch]
        )

    def extract_prepared(
        self,
        pixels: Pixels,
        geometries: Sequence[ImageGeometry],
        *,
        grad: bool = False,
        embeddings: bool = False,
        categories: Sequence[str | None] | None = None,
        names: Sequence[str] = (),
    ) -> FeatureMap:
        """Features of a batch of canvases made by :meth:`preparer` (stacked, on the device).

        Args:
            pixels: (B, 3, S, S) in [0, 1] (the teacher: a dict of them).
            geometries: one per image, as :meth:`preparer` gave them.
            embeddings: also return each image's global embedding (:attr:`embedding_kind`).
            categories: prompted models only: one category (or ``None``) per image.
            names: the images' names, for the error that non-finite features raise.
        Raises:
            InputError: the model's features are not finite (broken weights, or fp16 overflow):
                nothing downstream may write NaN.
        """
        if categories is not None and not self.prompted:
            raise InputError(f"{self.name} takes no categories (only prompted models such as the teacher do)")
        self._categories = list(categories) if categories is not None else None
        try:
            with contextlib.nullcontext() if grad else torch.inference_mode(), self._autocast():
                features, pooled = self.forward_with_embedding(pixels) if embeddings else (self(pixels), None)
        finally:
            self._categories = None
        if not torch.isfinite(features).all():
            shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "") if names else f"{len(geometries)} images"
            raise InputError(
                f"{self.name}: the model gave non-finite features (NaN or inf) for {shown}; its weights "
                f"are broken, or {self.config.precision} overflowed (try --precision fp32)"
            )
        features = features.float()
        norms = torch.linalg.vector_norm(features, dim=1, keepdim=True)
        pooled = F.normalize(pooled.float(), dim=1) if pooled is not None else None
        return FeatureMap(
            F.normalize(features, dim=1),
            tuple(geometries),
            self.name,
            self.random_weights,
            norms=norms,
            embeddings=pooled,
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        precision = self.config.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[precision])


def require_finite(tensors: Mapping[str, Tensor], source: str) -> None:
    """Refuse weights with a NaN or infinite value: a :class:`CheckpointError` naming ``source`` and the tensor."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"{source}: {name} holds non-finite values (NaN or inf); these weights are broken "
                "(a diverged training run?)"
            )


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
