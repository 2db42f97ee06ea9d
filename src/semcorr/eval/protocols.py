"""Evaluation protocols: each paper's rules for turning features into PCK, as named settings.

    evaluate("spair", root, model="marco", protocol="marco")     # MARCO's figure, under MARCO's rules
    evaluate("spair", root, model="marco", protocol="common")    # the same model under the common rules

Papers compare figures measured under different rules (per image or per keypoint, ``<`` or ``<=``,
stretched or padded input, distances in the original image or in the model's input frame); the same
model moves several points between them. A :class:`Protocol` fixes all of them:

* **input**: the canvas side and resize mode every model is run at (``None``: each model's own);
* **matcher**: how a source point's descriptor is taken and where its match is put (below);
* **similarity**: ``cosine`` (L2-normalised features) or ``dot`` (raw features: MARCO's temperature
  is tuned to their scale; :attr:`semcorr.features.FeatureMap.norms` keeps it);
* **PCK**: the headline average (``image``: each pair weighs the same; ``keypoint``: each keypoint
  does), the comparison (``<=`` or ``<``), the threshold length (the benchmark's target box or
  image, or always the image), and the **frame** distances and lengths are measured in:
  ``original`` target-image pixels, the ``stretched`` square canvas (x and y scaled apart), or the
  ``padded`` canvas (one scale, centred offset).

The protocols, as each author's code does it:

``distilldift`` (the default; semcorr's settings, ``--grid/--window/--temperature``, PCK options)
    The model's own input (DistillDIFT's student: 434² stretch). Features bilinearly upsampled to
    60x60, the source descriptor sampled bilinearly at the point, cosine similarity, soft-argmax
    (temperature 0.02) over an 11x11 window around the best cell. PCK per keypoint, ``<=``, the
    benchmark's threshold, in original pixels.
``marco`` (visinf/MARCO ``util/geometry.py``, ``models/marco.py``, ``datasets/dataset.py``, ``util/evaluator.py``)
    770² stretch. Keypoints scaled into the 770 frame and clamped to ``[1e-4, 769.9999]``; the source
    descriptor sampled bilinearly (``align_corners=True``) at ``x * w / 770`` from the raw features;
    raw dot product with every target cell; the map multiplied by a Gaussian (sigma 7 cells) around
    its peak; softmax with temperature 10 (``exp((s - max) / 10)``) over all cells; the expected cell
    mapped back as ``x * 769 / (w - 1)``. PCK per image, ``<=``, threshold and distance in the
    stretched 770 frame (box sides scaled by their own axis).
``diy-sc`` (odunkel/DIY-SC ``pck_train.py``, ``utils/utils_correspondence.py``, ``utils/utils_dataset.py``, ``utils/logger.py``)
    840² letterbox (longest side 840, centred). Keypoints scaled by ``840 / max(W, H)`` and shifted
    by the padding; the source descriptor is its cell's (``int(60 / 840 * x)``); cosine similarity;
    cells outside the 15x15 window around the peak multiplied by zero; softmax with beta 0.02 over
    all cells; the expected cell clamped to the grid and placed at ``cell * 14 + 7``. PCK per
    keypoint, strict ``<``, the benchmark's threshold scaled by the same factor, in the padded frame.
``geco`` (reginehartwig/geco ``src/matcher/argmaxmatcher.py``, ``src/evaluation/pck.py``, ``configs/eval_all.yaml``)
    518² stretch. The raw features of both images upsampled bilinearly to the images' own sizes and
    L2-normalised per pixel; the source descriptor at the pixel ``floor(x), floor(y)``; cosine with
    every target pixel; the best pixel's index is the prediction. PCK per keypoint, ``<=``, the
    target image's longer side as threshold for every benchmark (``alpha_bbox: False``), in original pixels.
``common`` (semcorr's one rule for every model)
    Each model's own input. Features upsampled bilinearly to ``max(native, 60)`` cells a side (never
    down), window soft-argmax as ``distilldift`` with the window scaled to the same share of the
    canvas (11 of 60 cells), cosine similarity. PCK ``<=``, the benchmark's threshold, original
    pixels; both averages reported, per keypoint first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._moved import renamed_names
from ..data.pairs import Pair
from ..errors import InputError
from ..settings import ResizeMode
from .pck import Average, ThresholdKind

MatcherKind = Literal["window_soft_argmax", "nearest", "kernel_soft_argmax", "zeroed_window_soft_argmax", "image_argmax"]
FrameKind = Literal["original", "stretched", "padded"]
COMMON_GRID = 60


@dataclass(frozen=True)
class Protocol:
    """One paper's evaluation rules (see the module). Every field is reported with the result.

    Attributes:
        name: the ``--protocol`` name.
        source: whose rules, and where in their code.
        input_size, resize_mode: the canvas every model runs at (``None``: the model's own).
        grid: the grid matching runs on: ``native`` (the model's), ``60`` (bilinear), ``image size``
            (GECO), ``max(native, 60)`` (``common``).
        matcher: ``window_soft_argmax``, ``kernel_soft_argmax`` (MARCO), ``zeroed_window_soft_argmax``
            (DIY-SC) or ``image_argmax`` (GECO); ``nearest`` for ``distilldift --method nearest``.
        similarity: ``cosine`` or ``dot`` (raw features).
        window: soft-argmax window side in cells (``None``: none, or the model's for ``common``).
        temperature: softmax temperature (MARCO 10, DIY-SC 0.02, DistillDIFT 0.02).
        sigma: MARCO's Gaussian around the peak, in cells.
        average: the headline PCK average (both are always in the result).
        inclusive: ``d <= alpha L`` (True) or ``d < alpha L``.
        threshold: ``bbox`` / ``image``; ``None``: the benchmark's.
        frame: where distances and thresholds are measured.
    """

    name: str
    source: str
    input_size: int | None
    resize_mode: ResizeMode | None
    grid: str
    matcher: MatcherKind
    similarity: Literal["cosine", "dot"]
    window: int | None
    temperature: float | None
    sigma: float | None
    average: Average
    inclusive: bool
    threshold: ThresholdKind | None
    frame: FrameKind

    def fields(self) -> dict[str, Any]:
        """The protocol as data (for results and tables)."""
        values = asdict(self)
        values["comparison"] = "<=" if values.pop("inclusive") else "<"
        return values

    def summary(self) -> str:
        """One line naming every rule."""
        size = f"{self.input_size}² {self.resize_mode}" if self.input_size else "each model's own input"
        parts = [f"protocol {self.name}: {size}", f"{self.matcher} on {self.similarity} similarity, {self.grid} grid"]
        if self.window:
            parts.append(f"window {self.window}")
        if self.sigma:
            parts.append(f"Gaussian sigma {self.sigma:g} cells")
        if self.temperature:
            parts.append(f"temperature {self.temperature:g}")
        threshold = {"bbox": "target box", "image": "target image", None: "benchmark's"}[self.threshold]
        parts.append(f"PCK per {self.average} (both reported), {self.fields()['comparison']}, {threshold} "
                     f"threshold, in the {self.frame} frame")
        return "; ".join(parts)

    def common_grid(self, native_grid: int) -> tuple[int, int]:
        """``common``'s (grid side, window side) for a model whose native grid side is ``native_grid``:
        never below 60, the window the same share of the canvas as 11 of 60 cells (odd, at least 3)."""
        grid = max(native_grid, COMMON_GRID)
        return grid, max(3, 2 * round((11 * grid / COMMON_GRID - 1) / 2) + 1)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("distilldift", "DistillDIFT (semcorr's settings; WACV 2025)", None, None, "60", "window_soft_argmax",
             "cosine", 11, 0.02, None, "keypoint", True, None, "original"),
    Protocol("marco", "MARCO (visinf/MARCO: util/geometry.py, util/evaluator.py)", 770, "square", "native",
             "kernel_soft_argmax", "dot", None, 10.0, 7.0, "image", True, None, "stretched"),
    Protocol("diy-sc", "DIY-SC (odunkel/DIY-SC: pck_train.py, utils/utils_correspondence.py)", 840, "letterbox",
             "native", "zeroed_window_soft_argmax", "cosine", 15, 0.02, None, "keypoint", False, None, "padded"),
    Protocol("geco", "GECO (reginehartwig/geco: src/matcher/argmaxmatcher.py, src/evaluation/pck.py)", 518, "square",
             "image size", "image_argmax", "cosine", None, None, None, "keypoint", True, "image", "original"),
    Protocol("common", "semcorr: one rule for every model", None, None, "max(native, 60)", "window_soft_argmax",
             "cosine", None, 0.02, None, "keypoint", True, None, "original"),
)}
DEFAULT_PROTOCOL = "distilldift"


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


@dataclass(frozen=True)
class Frame:
    """An image's pixels as a protocol measures them: ``frame = original * scale + offset``, annotated
    keypoints clamped to ``clamp`` (MARCO)."""

    scale: tuple[float, float]
    offset: tuple[float, float]
    clamp: tuple[float, float] | None = None

    @classmethod
    def of(cls, kind: FrameKind, image_size: tuple[int, int], canvas: int | None) -> "Frame":
        """The frame of an (H, W) image on a ``canvas``-wide square input."""
        height, width = image_size
        if kind == "original":
            return cls((1.0, 1.0), (0.0, 0.0))
        assert canvas is not None  # the protocols with a stretched or padded frame have a canvas
        if kind == "stretched":
            return cls((canvas / width, canvas / height), (0.0, 0.0), (1e-4, canvas - 1 - 1e-4))
        scale = canvas / max(width, height)  # padded: DIY-SC's preprocess_kps_pad
        if height < width:
            return cls((scale, scale), (0.0, float(int((canvas - int(np.around(canvas * height / width))) / 2))))
        if width < height:
            return cls((scale, scale), (float(int((canvas - int(np.around(canvas * width / height))) / 2)), 0.0))
        return cls((scale, scale), (0.0, 0.0))

    def to_frame(self, points: np.ndarray, *, annotated: bool = False) -> np.ndarray:
        """(N, 2) original pixels -> (N, 2) frame pixels: annotated keypoints (``annotated``) in
        float32 as the authors' tensors, clamped where the protocol clamps them; predictions in float64."""
        if not annotated:
            return np.asarray(points, np.float64) * np.asarray(self.scale) + np.asarray(self.offset)
        frame = (np.asarray(points, np.float32) * np.asarray(self.scale, np.float32)
                 + np.asarray(self.offset, np.float32)).astype(np.float32)
        return np.clip(frame, *self.clamp).astype(np.float32) if self.clamp else frame

    def from_frame(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) frame pixels -> (N, 2) original pixels (float64)."""
        return (np.asarray(points, np.float64) - np.asarray(self.offset)) / np.asarray(self.scale)

    def length(self, kind: ThresholdKind, box: np.ndarray, image_size: tuple[int, int]) -> float:
        """The threshold length ``L`` in this frame: the longer side of the target box or image."""
        sx, sy = self.scale
        if kind == "bbox":
            x1, y1, x2, y2 = (float(v) for v in box)
            return max((x2 - x1) * sx, (y2 - y1) * sy)
        return max(image_size[1] * sx, image_size[0] * sy)


def pair_frames(protocol: Protocol, pair: Pair, canvas: int | None) -> tuple[Frame, Frame]:
    """The (source, target) frames of a pair under ``protocol`` on a ``canvas``-wide input."""
    return (Frame.of(protocol.frame, pair.source_size, canvas), Frame.of(protocol.frame, pair.target_size, canvas))


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
