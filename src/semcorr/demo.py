"""``semcorr demo``: the main job on two images bundled with scikit-image (``pip install 'semcorr[demo]'``;
no download)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import WeightsUnavailableError
from .extras import require_extra
from .features.config import DEFAULT_MODEL
from .features.registry import build_extractor
from .fileio import check_output_folder, make_folder
from .matching.matcher import match_images

# A stereo pair of a motorcycle (scikit-image's data folder, from the Middlebury 2014 set).
DEMO_IMAGES = ("motorcycle_left.png", "motorcycle_right.png")
# Parts of the motorcycle in the left image (x, y pixels): wheel hubs, headlight, seat, tank, engine,
# indicator, tail light.
DEMO_POINTS = [[205, 318], [598, 375], [537, 155], [250, 185], [425, 200], [368, 333], [570, 130], [105, 210]]


def demo_images() -> tuple[Path, Path]:
    """Paths of the two demo images inside the installed scikit-image.

    Raises:
        MissingExtraError: scikit-image is not installed (``pip install 'semcorr[demo]'``).
    """
    module = require_extra("skimage.data", "the demo's sample images")
    assert module.__file__ is not None  # a regular package, not a namespace package
    folder = Path(module.__file__).parent
    return folder / DEMO_IMAGES[0], folder / DEMO_IMAGES[1]


def run_demo(
    model: str = DEFAULT_MODEL,
    *,
    out_dir: str | Path = "semcorr-demo",
    device: str | None = None,
    random_weights: bool = False,
    weights: str | None = None,
    log: Callable[[str], None] = print,
    **overrides: Any,
) -> dict[str, Any]:
    """Match :data:`DEMO_POINTS` between the demo images; write ``matches.json`` and ``matches.png``.

    If ``model``'s weights cannot be had, says so and runs the weight-free ``baseline`` instead.
    """
    out = make_folder(check_output_folder(out_dir, what="demo folder"))
    try:
        extractor = build_extractor(model, weights=weights, device=device, random_weights=random_weights, **overrides)
    except WeightsUnavailableError as error:
        log(f"{error}\n-> Showing the same job with the weight-free 'baseline' extractor instead.")
        extractor = build_extractor("baseline", device=device, **overrides)
    label = extractor.name + (" (random weights)" if extractor.random_weights else "")
    result = match_images(
        *demo_images(),
        DEMO_POINTS,
        model=extractor,
        out=out / "matches.json",
        show=out / "matches.png",
        title=f"semcorr demo: {label}",
    )
    log(f"model: {label}")
    for match in result["matches"]:
        (xa, ya), (xb, yb) = match["source"], match["target"]
        log(f"  ({xa:6.1f}, {ya:6.1f}) -> ({xb:6.1f}, {yb:6.1f})  score {match['score']:.3f}")
    log(f"wrote {out / 'matches.json'} and {out / 'matches.png'}")
    return result
