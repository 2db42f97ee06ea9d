"""``semcorr demo``: the main job on two images bundled with scikit-image (no download)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .errors import WeightsUnavailableError
from .features import DEFAULT_MODEL
from .matcher import Matcher
from .viz import plot_matches

# A stereo pair of a motorcycle (scikit-image's data folder, from the Middlebury 2014 set).
DEMO_IMAGES = ("motorcycle_left.png", "motorcycle_right.png")
# Parts of the motorcycle in the left image (x, y pixels): wheel hubs, headlight, seat, tank, engine,
# indicator, tail light.
DEMO_POINTS = [[205, 318], [598, 375], [537, 155], [250, 185], [425, 200], [368, 333], [570, 130], [105, 210]]


def demo_images() -> tuple[Path, Path]:
    """Paths of the two demo images inside the installed scikit-image."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    return folder / DEMO_IMAGES[0], folder / DEMO_IMAGES[1]


def run_demo(model: str = DEFAULT_MODEL, *, out_dir: str | Path = "semcorr-demo", device: str | None = None,
             random_weights: bool = False, weights: str | None = None, log: Callable[[str], None] = print,
             **overrides: Any) -> dict[str, Any]:
    """Match :data:`DEMO_POINTS` between the demo images; write ``matches.json`` and ``matches.png``.

    If ``model``'s weights cannot be had, says so and runs the weight-free ``baseline`` instead.
    """
    try:
        matcher = Matcher(model, weights=weights, device=device, random_weights=random_weights, **overrides)
    except WeightsUnavailableError as error:
        log(f"{error}\n-> Showing the same job with the weight-free 'baseline' extractor instead.")
        matcher = Matcher("baseline", device=device, **overrides)
    image_a, image_b = demo_images()
    result = matcher.match(image_a, image_b, DEMO_POINTS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "matches.json").write_text(json.dumps(result, indent=2))
    label = result["model"] + (" (random weights)" if result["random_weights"] else "")
    plot_matches(image_a, image_b, result["matches"], out / "matches.png", title=f"semcorr demo: {label}")
    log(f"model: {label}")
    for match in result["matches"]:
        (xa, ya), (xb, yb) = match["source"], match["target"]
        log(f"  ({xa:6.1f}, {ya:6.1f}) -> ({xb:6.1f}, {yb:6.1f})  score {match['score']:.3f}")
    log(f"wrote {out / 'matches.json'} and {out / 'matches.png'}")
    return result

