"""Options several commands share, and turning parsed options into the API's settings.

Imports no command and nothing heavy. Options that fill a settings dataclass default to ``None``
("not given"), so the dataclass's own defaults apply and it checks what was given; the help texts
state those defaults (``tests/test_cli.py`` checks that they agree).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..extract.config import ENGINES, ExtractSettings, ModelSpec, RaySettings
from ..features.config import DEFAULT_MODEL
from ..fileio import read_json
from ..settings import ON_ERROR, PRECISIONS, RESIZE_MODES
from ..train.config import DistillConfig, FinetuneConfig
from .parser import PointsAction, add_old_spelling

if TYPE_CHECKING:
    from ..matching.points import MatchSettings

MATCH_FIELDS = ("grid", "method", "window", "temperature")


@dataclass(frozen=True)
class RenamedOption:
    """An option that was renamed: its old spelling keeps working, hidden from ``--help``, with one
    warning per run, until semcorr :data:`~semcorr._moved.REMOVED_IN` (:class:`~.parser.OldSpelling`).

    Attributes:
        command: the command that has it.
        old: the old spelling.
        new: the option that took its place.
        fields: for an old option whose meaning depended on its value: the value -> ``{dest: value}``
            of the options it means now (``None``: the value goes to ``new`` as it is).
        note: what the old option took, for the documentation (Markdown; docs/reliability.md shows it).
    """

    command: str
    old: str
    new: str
    fields: Callable[[str], dict[str, Any]] | None = None
    note: str = ""


# Every option renamed since semcorr 0.1.0 (docs/reliability.md lists them for users).
RENAMED_OPTIONS: tuple[RenamedOption, ...] = (
    RenamedOption(
        "distill",
        "--pairs",
        "--pair-list",
        lambda value: DistillConfig.upgrade({"pairs": value}),
        "a pair list, or a SPair-71k folder (now `--benchmark spair --data-root DIR`)",
    ),
    RenamedOption(
        "finetune-3d",
        "--pairs",
        "--pair-file",
        lambda value: FinetuneConfig.upgrade({"pairs": value}),
        "a pair file, or a benchmark name (now `--benchmark NAME`)",
    ),
)


def add_renamed_options(commands: argparse._SubParsersAction) -> None:
    """The old spellings of :data:`RENAMED_OPTIONS`, on the commands registered in ``commands``."""
    from .._moved import REMOVED_IN

    for entry in RENAMED_OPTIONS:
        add_old_spelling(commands.choices[entry.command], entry.old, entry.new, until=REMOVED_IN, fields=entry.fields)


def warn_random_weights(subject: str) -> None:
    """Say on stderr that the output came from random weights; ``subject`` names it with its verb
    (``"the matches carry"``)."""
    print(f"semcorr: warning: random weights; {subject} no meaning", file=sys.stderr)


def add_model_options(parser: argparse.ArgumentParser, default_model: str = DEFAULT_MODEL) -> None:
    """--model, --weights, --random-weights, --device, --adapter, and the extractor's --input-size,
    --resize-mode and --precision (left to the preset when not given)."""
    parser.add_argument(
        "--model", default=default_model, help=f"extractor preset (default {default_model}; see `semcorr models`)"
    )
    parser.add_argument("--weights", help="Hugging Face id, local folder or checkpoint file for the model")
    parser.add_argument("--random-weights", action="store_true", help="untrained weights (timing and tests)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--input-size", type=int, help="input canvas side in pixels (default: the model's)")
    parser.add_argument("--resize-mode", choices=RESIZE_MODES, help="default square (the papers')")
    parser.add_argument("--precision", choices=PRECISIONS, help="default fp32")
    parser.add_argument("--adapter", help="student only: a LoRA adapter folder (RUN/adapter of `semcorr distill`)")
    parser.add_argument(
        "--backbone",
        help="marco, diy-sc, geco: the DINOv2 weights under the method's own (Hugging Face "
        "id, save_pretrained folder or official .pth; default: the official Hugging Face id)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        default=None,
        help="geco: download the authors' weights, whose licence they do not state (never by default)",
    )


def extractor_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The extractor config fields given on the command line (:func:`add_model_options`)."""
    names = ("input_size", "resize_mode", "precision", "adapter", "backbone", "download")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def model_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``model``, ``weights``, ``random_weights``, ``device`` and the extractor overrides, as the
    API's functions take them."""
    return dict(
        model=args.model,
        weights=args.weights,
        random_weights=args.random_weights,
        device=args.device,
        **extractor_overrides(args),
    )


def add_match_options(parser: argparse.ArgumentParser) -> None:
    """Options of :class:`~semcorr.matching.MatchSettings`; read them back with :func:`match_settings`."""
    parser.add_argument("--grid", type=int, help="upsample features to this grid; 0: native (default 60)")
    parser.add_argument("--method", choices=["window_soft_argmax", "nearest"], help="default window_soft_argmax")
    parser.add_argument("--window", type=int, help="soft-argmax window in cells, odd (default 11)")
    parser.add_argument("--temperature", type=float, help="soft-argmax temperature (default 0.02)")


def given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The options among ``names`` that were given (not ``None``)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def match_settings(args: argparse.Namespace) -> MatchSettings:
    """The :class:`~semcorr.matching.MatchSettings` of :func:`add_match_options`' options
    (``--grid 0`` means the native grid)."""
    from ..matching.points import MatchSettings

    fields = given(args, MATCH_FIELDS)
    if fields.get("grid") == 0:
        fields["grid"] = None
    return MatchSettings(**fields)


def add_points_options(parser: argparse.ArgumentParser, where: str) -> None:
    """--points X,Y ... and --points-file (one of the two): points in ``where``'s pixels. A point may
    start with a minus sign, and image paths may follow the points (:class:`~.parser.PointsAction`)."""
    parser.add_argument(
        "--points",
        nargs="+",
        action=PointsAction,
        metavar="X,Y",
        help=f"points in {where}'s pixels (negative numbers are fine: --points -5,10; the image paths may follow them)",
    )
    parser.add_argument("--points-file", help='JSON file: [[x, y], ...] or {"points": [...]}')


def points_from(args: argparse.Namespace) -> list[list[float]]:
    """The points of :func:`add_points_options`' options."""
    if bool(args.points) == bool(args.points_file):
        raise InputError("give the points with either --points x,y ... or --points-file FILE")
    return [parse_point(p) for p in args.points] if args.points else read_points_file(args.points_file)


def parse_point(text: str) -> list[float]:
    """``"120,45.5"`` -> ``[120.0, 45.5]``."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--points: {text!r} is not an x,y pair (e.g. 120,45.5)") from None
    return [x, y]


def read_points_file(path: str) -> list[list[float]]:
    """Points from JSON: ``[[x, y], ...]`` or ``{"points": [[x, y], ...]}``."""
    data = read_json(path)
    points = data.get("points") if isinstance(data, dict) else data
    valid = isinstance(points, list) and all(
        isinstance(p, list)
        and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)
        for p in points
    )
    if not valid:
        raise InputError(f'{path}: expected [[x, y], ...] or {{"points": [[x, y], ...]}} with finite numbers x, y')
    if not points:
        raise InputError(f"{path}: holds no points; give at least one [x, y]")
    return points


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The options of an extraction run (``extract``, ``cache-teacher``): batching, decoding, errors,
    the engine, the Ray engine's resources and the local engine's rank; read them back with
    :func:`extract_settings` and :func:`ray_settings`."""
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default 8)")
    parser.add_argument(
        "--workers",
        type=int,
        help="processes decoding and resizing images (default: one per CPU less one, at most 8; 0: none)",
    )
    parser.add_argument(
        "--on-error",
        choices=ON_ERROR,
        help="an unreadable image is reported by path and skipped (default skip) or stops the run",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process (under torchrun / accelerate: each process its share); "
        "ray: a Ray Data pipeline on a Ray cluster (pip install 'semcorr[ray]') (default local)",
    )
    parser.add_argument(
        "--ray-address",
        help="ray: the cluster to join (auto, HOST:PORT, ray://HOST:10001; default: $RAY_ADDRESS, else a local Ray)",
    )
    parser.add_argument("--num-gpus", type=float, help="ray: GPUs per extracting actor (default 0.0)")
    parser.add_argument("--concurrency", type=int, help="ray: extracting actors, each loads the model once (default 1)")
    parser.add_argument("--cpus-per-actor", type=float, help="ray: CPUs per extracting actor (default 1.0)")
    parser.add_argument("--rank", type=int, help="local: this process's rank (default: $RANK, else 0)")
    parser.add_argument("--world-size", type=int, help="local: number of processes (default: $WORLD_SIZE, else 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def extract_settings(args: argparse.Namespace, **fixed: Any) -> ExtractSettings:
    """The :class:`~semcorr.extract.ExtractSettings` of :func:`add_engine_options`' options (``fixed``:
    fields the command sets itself)."""
    return ExtractSettings(**given(args, ("batch_size", "workers", "on_error")), **fixed)


def ray_settings(args: argparse.Namespace) -> RaySettings:
    """The :class:`~semcorr.extract.RaySettings` of :func:`add_engine_options`' options."""
    fields = given(args, ("num_gpus", "concurrency", "cpus_per_actor"))
    return RaySettings(address=args.ray_address, **fields)


def model_spec(args: argparse.Namespace, **overrides: Any) -> ModelSpec:
    """The :class:`~semcorr.extract.ModelSpec` of :func:`add_model_options`' options (plus config
    ``overrides`` of the command's own): what each engine process builds."""
    arguments = model_arguments(args)
    name, weights = arguments.pop("model"), arguments.pop("weights")
    random_weights, device = arguments.pop("random_weights"), arguments.pop("device")
    return ModelSpec(
        name, weights=weights, random_weights=random_weights, device=device, overrides={**arguments, **overrides}
    )
