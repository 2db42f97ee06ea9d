"""Evaluation protocols: each paper's rules for turning features into PCK, as named settings.

    evaluate("spair", root, model="distilldift-us", protocol="distilldift-paper")  # the DistillDIFT authors' code
    evaluate("spair", root, model="marco", protocol="marco")     # MARCO's figure, under MARCO's rules
    evaluate("spair", root, model="marco", protocol="semcorr")   # the same model under semcorr's own rules

Papers compare figures measured under different rules (per image or per keypoint, ``<`` or ``<=``,
stretched or padded input, distances in the original image or in the model's input frame, the
threshold's scale); the same model moves several points between them. A :class:`Protocol` fixes
all of them:

* **input**: the canvas side and resize mode every model is run at (``None``: each model's own);
* **matcher** and **lookup**: how a source point's descriptor is taken and where its match is put;
* **similarity**: ``cosine`` (L2-normalised features) or ``dot`` (raw features);
* **PCK**: the headline average, the comparison (``<=`` or ``<``), the threshold length (the
  benchmark's target box or image) and how it is scaled (:data:`~.frames.LENGTH_RULES`), the
  **frame** distances are measured in (``original`` pixels, the ``stretched`` square canvas, the
  ``padded`` canvas) and the authors' arithmetic (float16 / float32 / float64);
* **outside keypoints**: annotated keypoints outside their image are counted (every authors' code
  does; MARCO clamps them into its canvas) or left out with a warning (semcorr's own rules).

``semcorr`` (the default) and ``common`` are semcorr's own rules; ``distilldift-paper``, ``marco``,
``diy-sc`` and ``geco`` are the authors' code. ``distilldift-paper`` has different rules per
benchmark, as the DistillDIFT release does (:class:`PaperProtocol`). Every rule, where in the
authors' code it comes from, and a worked example: ``docs/evaluation-protocols.md``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._moved import renamed_names
from ..data.pairs import Pair
from ..errors import InputError
from ..settings import ResizeMode
from .frames import LENGTH_RULES, PRECISIONS, Frame, FrameKind, LengthRule, Precision
from .pck import Average, ThresholdKind

MatcherKind = Literal[
    "window_soft_argmax", "nearest", "kernel_soft_argmax", "zeroed_window_soft_argmax", "image_argmax"
]
LookupKind = Literal["bilinear", "bilinear, corner-aligned", "cell", "pixel floor", "pixel round"]
OutsideRule = Literal["count", "leave out"]
COMMON_GRID = 60
DEFAULT_PROTOCOL = "semcorr"
# old protocol name -> (new name, the one-line warning)
ALIASES: dict[str, tuple[str, str]] = {
    "distilldift": (
        "semcorr",
        "--protocol distilldift is now called semcorr (semcorr's own rules with DistillDIFT's "
        "matching settings); the DistillDIFT authors' code is --protocol distilldift-paper",
    ),
}
LOOKUPS: dict[str, str] = {
    "bilinear": "the source descriptor sampled bilinearly at the point",
    "bilinear, corner-aligned": "sampled bilinearly with align_corners=True at x * w / canvas",
    "cell": "the descriptor of the cell int(grid / side * x') (C truncation; the flat index wraps as the authors' "
    "indexing does)",
    "pixel floor": "the pixel floor(x), floor(y) of the map upsampled to the image (negative indices wrap)",
    "pixel round": "the pixel round(x), round(y) of the map upsampled to the image, clamped to the image",
}
OUTSIDE = {
    "count": "keypoints outside their image counted",
    "leave out": "keypoints > 1 px outside their image left out",
}


@dataclass(frozen=True)
class Protocol:
    """One paper's evaluation rules on one benchmark (see the module). Every field is reported with the result.

    Attributes:
        name: the ``--protocol`` name.
        source: whose rules, and where in their code.
        input_size, resize_mode: the canvas every model runs at (``None``: the model's own).
        grid: the grid matching runs on: ``native`` (the model's), ``60`` (bilinear from the native
            grid), ``image size`` (upsampled to each image), ``max(native, 60)`` (``common``).
        matcher: ``window_soft_argmax`` / ``nearest`` (semcorr), ``kernel_soft_argmax`` (MARCO),
            ``zeroed_window_soft_argmax`` (DIY-SC, DistillDIFT ``eval/``) or ``image_argmax`` (GECO,
            DistillDIFT ``train/eval.py``).
        similarity: ``cosine`` or ``dot`` (raw features).
        window: soft-argmax window side in cells (``None``: none, or the model's for ``common``).
        temperature: softmax temperature.
        sigma: MARCO's Gaussian around the peak, in cells.
        average: the headline PCK average (both are always in the result).
        inclusive: ``d <= alpha L`` (True) or ``d < alpha L``.
        threshold: ``bbox`` / ``image``; ``None``: the benchmark's.
        frame: where distances and thresholds are measured.
        lookup: how the source point's descriptor is found (:data:`LOOKUPS`).
        frame_size: the measuring frame's side (``None``: the input canvas).
        clamp: annotated keypoints clamped into the frame (MARCO).
        length_rule: how ``L`` is scaled into the frame (:data:`~.frames.LENGTH_RULES`).
        precision: the authors' arithmetic (:data:`~.frames.PRECISIONS`).
        outside: annotated keypoints outside their image ``count`` or are ``leave out`` (:data:`OUTSIDE`).
        code: for a per-benchmark protocol, which of the authors' programs these rules come from.
        deviations: where semcorr cannot do exactly what the authors' code does, and what it does.
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
    lookup: LookupKind = "bilinear"
    frame_size: int | None = None
    clamp: bool = False
    length_rule: LengthRule = "own axis"
    precision: Precision = "float64"
    outside: OutsideRule = "count"
    code: str = ""
    deviations: tuple[str, ...] = ()

    def for_benchmark(self, benchmark: str) -> Protocol:
        """The rules on ``benchmark``: the same for every benchmark."""
        return self

    def fields(self) -> dict[str, Any]:
        """The protocol as data (for results and tables)."""
        values = dataclasses.asdict(self)
        values["comparison"] = "<=" if values.pop("inclusive") else "<"
        values["deviations"] = list(self.deviations)
        return values

    def summary(self) -> str:
        """One line naming every rule."""
        size = f"{self.input_size}² {self.resize_mode}" if self.input_size else "each model's own input"
        name = f"{self.name} ({self.code})" if self.code else self.name
        parts = [
            f"protocol {name}: {size}",
            f"{self.matcher} on {self.similarity} similarity, {self.grid} grid",
            f"source descriptor: {self.lookup}",
        ]
        if self.window:
            parts.append(f"window {self.window}")
        if self.sigma:
            parts.append(f"Gaussian sigma {self.sigma:g} cells")
        if self.temperature:
            parts.append(f"temperature {self.temperature:g}")
        threshold = {"bbox": "target box", "image": "target image", None: "benchmark's"}[self.threshold]
        frame = (
            f"the {self.frame_size or 'input'} {self.frame} frame" if self.frame != "original" else "original pixels"
        )
        parts.append(
            f"PCK per {self.average} (both reported), {self.fields()['comparison']}, {threshold} threshold "
            f"({self.length_rule}), in {frame}{', keypoints clamped into it' if self.clamp else ''}, "
            f"{self.precision}"
        )
        parts.append(OUTSIDE[self.outside])
        return "; ".join(parts)

    def common_grid(self, native_grid: int) -> tuple[int, int]:
        """``common``'s (grid side, window side) for a model whose native grid side is ``native_grid``:
        never below 60, the window the same share of the canvas as 11 of 60 cells (odd, at least 3)."""
        grid = max(native_grid, COMMON_GRID)
        return grid, max(3, 2 * round((11 * grid / COMMON_GRID - 1) / 2) + 1)

    def __post_init__(self) -> None:
        if self.length_rule not in LENGTH_RULES or self.precision not in PRECISIONS or self.lookup not in LOOKUPS:
            raise ValueError(f"protocol {self.name}: unknown length rule, precision or lookup")


@dataclass(frozen=True)
class PaperProtocol:
    """A paper whose released code uses different rules per benchmark: one ``--protocol`` name,
    one :class:`Protocol` per benchmark its code evaluates.

    Attributes:
        rules: benchmark name -> its rules.
        refusal: why the other benchmarks are refused (the authors' code does not evaluate them).
    """

    name: str
    source: str
    rules: Mapping[str, Protocol]
    refusal: str

    def for_benchmark(self, benchmark: str) -> Protocol:
        """The rules on ``benchmark``.

        Raises:
            InputError: the authors' code does not evaluate ``benchmark``.
        """
        if benchmark not in self.rules:
            raise InputError(f"--protocol {self.name}: {self.refusal}; got {benchmark}")
        return self.rules[benchmark]

    def summary(self) -> str:
        return f"protocol {self.name}: " + "; ".join(f"{name}: {rules.code}" for name, rules in self.rules.items())


DD_EVAL = (
    "DistillDIFT authors' eval/ (CompVis/distilldift: eval/eval.py:127-255, eval/utils/utils_correspondence.py:"
    "229-392, eval/utils/utils_dataset.py:14-66,163-230, eval/configs/eval_distilldift_us.yaml)"
)
DD_TRAIN = (
    "DistillDIFT authors' train/eval.py (CompVis/distilldift: train/eval.py:16-88,108,188-192, "
    "train/utils/correspondence.py:66-85,151-166,286-383, train/datasets/correspondence.py)"
)
PREPROCESSING = (
    "images are prepared by the model's own preset (semcorr's DistillDIFT presets: torch's antialiased "
    "bilinear resize of float pixels and the ImageNet mean/std); eval/ resizes 8-bit RGB with Pillow "
    "bilinear"
)
WRAP = (
    "a source keypoint far outside its image gives a flat cell index the authors' indexing wraps (taken as they "
    "do); where their code stops with an IndexError (index >= grid cells) semcorr wraps on and warns"
)
DISTILLDIFT_EVAL = Protocol(
    name="distilldift-paper",
    source=DD_EVAL,
    input_size=434,
    resize_mode="square",
    grid="60",
    matcher="zeroed_window_soft_argmax",
    similarity="cosine",
    window=11,
    temperature=0.02,
    sigma=None,
    average="keypoint",
    inclusive=False,
    threshold="bbox",
    frame="stretched",
    lookup="cell",
    frame_size=840,
    length_rule="height scale",
    precision="float32",
    code="eval/",
    deviations=(
        PREPROCESSING,
        WRAP,
        "keypoints are the pair file's (the authors read the image files' ImageAnnotation; "
        "the same set on every pair checked)",
    ),
)
DISTILLDIFT_EVAL_PASCAL = dataclasses.replace(
    DISTILLDIFT_EVAL,
    threshold="image",
    length_rule="frame side",
    source=DD_EVAL.replace(
        "eval/eval.py:127-255", "eval/eval.py:127-255 (L = ANNO_SIZE when load_pascal_data gives no thresholds)"
    ),
    deviations=(
        PREPROCESSING,
        WRAP,
        "the authors' eval/ has a PF-PASCAL path but no PF-PASCAL configuration or "
        "figure; its rules with the SPair-71k configuration",
    ),
)
DISTILLDIFT_TRAIN = Protocol(
    name="distilldift-paper",
    source=DD_TRAIN,
    input_size=434,
    resize_mode="square",
    grid="image size",
    matcher="image_argmax",
    similarity="cosine",
    window=None,
    temperature=None,
    sigma=None,
    average="keypoint",
    inclusive=True,
    threshold="bbox",
    frame="original",
    lookup="pixel round",
    length_rule="float16 corners",
    precision="float16",
    code="train/eval.py",
    deviations=(
        "images are prepared by the model's own preset: semcorr's DistillDIFT presets normalise with the ImageNet "
        "mean/std, train/eval.py feeds [0, 1] pixels (its Preprocessor has normalize_image=False); both resize with "
        "torch's antialiased bilinear",
        "the paper's figures used the unreleased CO3D-refined weights (checkpoints/distilled_us_best_co3d)",
    ),
)
DISTILLDIFT_PAPER = PaperProtocol(
    name="distilldift-paper",
    source="the DistillDIFT paper's figures (WACV 2025) as the authors' released code measures them",
    rules={
        "spair": DISTILLDIFT_EVAL,
        "pf-pascal": DISTILLDIFT_EVAL_PASCAL,
        "pf-willow": dataclasses.replace(
            DISTILLDIFT_TRAIN,
            deviations=(
                *DISTILLDIFT_TRAIN.deviations,
                (
                    "pairs and keypoints from the subclass folders' .mat files (every ordered pair of a subclass); the "
                    "authors read CNNGeometric's test_pairs_pf.csv, believed to hold the same 900 pairs (not verified)"
                ),
            ),
        ),
        "cub": dataclasses.replace(DISTILLDIFT_TRAIN, length_rule="float16 size"),
    },
    refusal="the DistillDIFT authors' code evaluates SPair-71k, PF-WILLOW, CUB-200-2011 and PF-PASCAL only (no AP-10K)",
)

SEMCORR = Protocol(
    "semcorr",
    "semcorr's own rules, DistillDIFT's matching settings (the default)",
    None,
    None,
    "60",
    "window_soft_argmax",
    "cosine",
    11,
    0.02,
    None,
    "keypoint",
    True,
    None,
    "original",
    outside="leave out",
)
PROTOCOLS: dict[str, Protocol | PaperProtocol] = {
    p.name: p
    for p in (
        SEMCORR,
        DISTILLDIFT_PAPER,
        Protocol(
            "marco",
            "MARCO (visinf/MARCO: util/geometry.py, util/evaluator.py, datasets/dataset.py:135-182)",
            770,
            "square",
            "native",
            "kernel_soft_argmax",
            "dot",
            None,
            10.0,
            7.0,
            "image",
            True,
            None,
            "stretched",
            lookup="bilinear, corner-aligned",
            clamp=True,
        ),
        Protocol(
            "diy-sc",
            "DIY-SC (odunkel/DIY-SC: pck_train.py, utils/utils_correspondence.py, utils/utils_dataset.py)",
            840,
            "letterbox",
            "native",
            "zeroed_window_soft_argmax",
            "cosine",
            15,
            0.02,
            None,
            "keypoint",
            False,
            None,
            "padded",
            lookup="cell",
            deviations=(WRAP,),
        ),
        Protocol(
            "geco",
            "GECO (reginehartwig/geco: src/matcher/argmaxmatcher.py, src/evaluation/pck.py)",
            518,
            "square",
            "image size",
            "image_argmax",
            "cosine",
            None,
            None,
            None,
            "keypoint",
            True,
            "image",
            "original",
            lookup="pixel floor",
            deviations=(
                "a source keypoint at or beyond the image's right or bottom edge stops GECO's code with an "
                "IndexError; semcorr wraps it as GECO wraps negative indices, and warns",
            ),
        ),
        Protocol(
            "common",
            "semcorr: one rule for every model",
            None,
            None,
            "max(native, 60)",
            "window_soft_argmax",
            "cosine",
            None,
            0.02,
            None,
            "keypoint",
            True,
            None,
            "original",
            outside="leave out",
        ),
    )
}


def get_protocol(name: str | Protocol | PaperProtocol) -> Protocol | PaperProtocol:
    """A protocol by name (an old name warns once and gives the new one).

    Raises:
        InputError: an unknown name.
    """
    if isinstance(name, (Protocol, PaperProtocol)):
        return name
    if name in ALIASES:
        new, message = ALIASES[name]
        warnings.warn(message, FutureWarning, stacklevel=3)
        name = new
    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def resolve_protocol(name: str | Protocol | PaperProtocol, benchmark: str) -> Protocol:
    """The rules of protocol ``name`` on ``benchmark`` (a canonical benchmark name)."""
    return get_protocol(name).for_benchmark(benchmark)


def pair_frames(protocol: Protocol, pair: Pair, canvas: int | None) -> tuple[Frame, Frame]:
    """The (source, target) frames of a pair under ``protocol`` on a ``canvas``-wide input (the
    protocol's own frame side where it has one)."""
    side = protocol.frame_size or canvas
    source, target = (
        Frame.of(
            protocol.frame,
            size,
            side,
            clamp=protocol.clamp,
            length_rule=protocol.length_rule,
            precision=protocol.precision,
        )
        for size in (pair.source_size, pair.target_size)
    )
    return source, target


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
