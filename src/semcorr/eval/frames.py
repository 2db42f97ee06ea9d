"""Where and how a protocol measures PCK: a :class:`Frame` per target image.

A frame maps original pixels into the pixels a protocol measures in (``frame = original * scale +
offset``), says whether annotated keypoints are clamped into it (MARCO), how the threshold length
``L`` is taken in it (:data:`LENGTH_RULES`) and in which floating-point precision the authors' code
compares (:data:`PRECISIONS`): the released scripts keep keypoints in float32 or float16 tensors,
and a distance that lands on ``alpha * L`` is decided by that precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..data.benchmarks import ThresholdKind

FrameKind = Literal["original", "stretched", "padded"]
LengthRule = Literal["own axis", "height scale", "frame side", "float16 corners", "float16 size"]
Precision = Literal["float64", "float32", "float16"]

LENGTH_RULES: dict[str, str] = {
    "own axis": "the longer side of the box (or image), each side scaled by its own axis' factor",
    "height scale": "the longer side of the box (or image) in original pixels times frame side / image height",
    "frame side": "the frame's side, whatever the box",
    "float16 corners": "the longer side of the box, corners rounded to float16 and subtracted in float16",
    "float16 size": "the longer side of the box, width and height rounded to float16",
}
PRECISIONS: dict[str, str] = {
    "float64": "float64 distances and limits",
    "float32": "float32 keypoints and distances, limits float32(alpha) * L in float64 (float32 with 'frame side')",
    "float16": "float16 keypoints, distances and limits",
}


@dataclass(frozen=True)
class Frame:
    """An image's pixels as a protocol measures them.

    Attributes:
        scale, offset: ``frame = original * scale + offset`` per axis (x, y).
        clamp: annotated keypoints clamped to ``[low, high]`` on both axes (MARCO); ``None``: not.
        side: the frame's canvas side in pixels (``None``: original pixels).
        length_rule: how ``L`` is taken (:data:`LENGTH_RULES`).
        precision: the authors' arithmetic (:data:`PRECISIONS`).
    """

    scale: tuple[float, float]
    offset: tuple[float, float]
    clamp: tuple[float, float] | None = None
    side: int | None = None
    length_rule: LengthRule = "own axis"
    precision: Precision = "float64"

    @classmethod
    def of(
        cls,
        kind: FrameKind,
        image_size: tuple[int, int],
        canvas: int | None,
        *,
        clamp: bool = False,
        length_rule: LengthRule = "own axis",
        precision: Precision = "float64",
    ) -> Frame:
        """The frame of an (H, W) image on a ``canvas``-wide square (``original``: the image itself)."""
        height, width = image_size
        if kind == "original":
            return cls((1.0, 1.0), (0.0, 0.0), None, None, length_rule, precision)
        if canvas is None:
            raise ValueError(f"a {kind} frame needs a canvas side")
        bounds = (1e-4, canvas - 1 - 1e-4) if clamp else None  # MARCO's regularise_coordinates(eps=1e-4)
        if kind == "stretched":
            return cls((canvas / width, canvas / height), (0.0, 0.0), bounds, canvas, length_rule, precision)
        scale = canvas / max(width, height)  # padded: GeoAware-SC's preprocess_kps_pad
        offset = (0.0, 0.0)
        if height < width:
            offset = (0.0, float(int((canvas - int(np.around(canvas * height / width))) / 2)))
        elif width < height:
            offset = (float(int((canvas - int(np.around(canvas * width / height))) / 2)), 0.0)
        return cls((scale, scale), offset, bounds, canvas, length_rule, precision)

    def to_frame(self, points: np.ndarray, *, annotated: bool = False) -> np.ndarray:
        """(N, 2) original pixels -> (N, 2) frame pixels. Annotated keypoints (``annotated``) as the
        authors' tensors hold them (float32, or float16 rounded first under ``float16``) and clamped
        where the protocol clamps them; predictions in float64."""
        if not annotated:
            return np.asarray(points, np.float64) * np.asarray(self.scale) + np.asarray(self.offset)
        points = np.asarray(points, np.float32)
        if self.precision == "float16":
            points = points.astype(np.float16).astype(np.float32)
        frame = (points * np.asarray(self.scale, np.float32) + np.asarray(self.offset, np.float32)).astype(np.float32)
        return np.clip(frame, *self.clamp).astype(np.float32) if self.clamp else frame

    def from_frame(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) frame pixels -> (N, 2) original pixels (float64)."""
        return (np.asarray(points, np.float64) - np.asarray(self.offset)) / np.asarray(self.scale)

    def length(self, kind: ThresholdKind, box: Sequence[float] | np.ndarray, image_size: tuple[int, int]) -> float:
        """The threshold length ``L`` in this frame (:attr:`length_rule`) of the target box ``(x1, y1, x2,
        y2)`` (``bbox``) or of the (H, W) target image (``image``)."""
        height, width = image_size
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box, np.float32))
        sides = (x2 - x1, y2 - y1) if kind == "bbox" else (float(width), float(height))
        if self.length_rule == "frame side":
            return float(self.side if self.side is not None else max(width, height))
        if self.length_rule == "height scale":
            return max(sides) * ((self.side or height) / height)
        if self.length_rule == "float16 corners" and kind == "bbox":
            corners = np.asarray(box, np.float32).astype(np.float16)
            return float(max(corners[2] - corners[0], corners[3] - corners[1]))  # float16 arithmetic
        if self.length_rule == "float16 size" and kind == "bbox":
            return float(max(np.float16(np.float32(x2) - np.float32(x1)), np.float16(np.float32(y2) - np.float32(y1))))
        sx, sy = self.scale
        return max(sides[0] * sx, sides[1] * sy)

    def correct(
        self, predicted: np.ndarray, target: np.ndarray, length: float, alphas: Sequence[float], *, inclusive: bool
    ) -> np.ndarray:
        """Which predictions are correct at each threshold, measured in this frame.

        Args:
            predicted: (N, 2) predicted target points in original pixels.
            target: (N, 2) annotated target points in original pixels.
            length: ``L`` from :meth:`length`.
            alphas: (A,) threshold fractions.
            inclusive: ``d <= alpha L`` (True) or ``d < alpha L``.
        Returns:
            (A, N) bool.
        """
        truth = self.to_frame(target, annotated=True)
        found = self.to_frame(predicted)
        if self.precision == "float16":
            difference = (found.astype(np.float32) - truth.astype(np.float32)).astype(np.float16)
            distance = np.sqrt(np.square(difference.astype(np.float32)).sum(axis=1)).astype(np.float16)
        elif self.precision == "float32":
            distance = np.sqrt(np.square(found.astype(np.float32) - truth).sum(axis=1, dtype=np.float32))
        else:
            distance = np.linalg.norm(found - truth.astype(np.float64), axis=1)
        distance = distance.astype(np.float64)
        limits = np.asarray(self.limits(length, alphas), np.float64)
        return distance[None] <= limits[:, None] if inclusive else distance[None] < limits[:, None]

    def limits(self, length: float, alphas: Sequence[float]) -> list[float]:
        """The distance limit ``alpha * L`` at each threshold, as :meth:`correct` compares with it."""
        alpha32 = np.asarray(alphas, np.float32)
        if self.precision == "float16":
            values = (np.float32(length) * alpha32).astype(np.float16).astype(np.float64)
        elif self.precision == "float32":
            values = (
                (alpha32 * np.float32(length)).astype(np.float64)
                if self.length_rule == "frame side"
                else alpha32.astype(np.float64) * float(length)
            )
        else:
            values = np.asarray(alphas, np.float64) * float(length)
        return [float(v) for v in values]

    def fields(self) -> dict[str, Any]:
        """The frame as data (saved with each pair's predictions)."""
        return {
            "scale": list(self.scale),
            "offset": list(self.offset),
            "clamp": list(self.clamp) if self.clamp else None,
            "side": self.side,
            "length_rule": self.length_rule,
            "precision": self.precision,
        }
