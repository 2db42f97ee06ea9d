"""The tables ``semcorr eval`` prints: per category for one model, one row per model for several."""

from __future__ import annotations

from typing import Any


def _cell(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.1f}"


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of an :func:`~semcorr.eval.evaluate` result: one row per category, then
    the overall figures (per keypoint, per image, category mean) and the random-guess level."""
    keys = list(result["pck"])
    average = result["settings"]["pck"]["average"]
    names = list(result["per_category"])
    labels = ["all, per keypoint", "all, per image", "category mean", "random guess in box"]
    width = max(len(n) for n in names + labels + ["category"])
    header = f"{'category':<{width}}  {'pairs':>6}  {'kpts':>7}  " + "  ".join(f"@{k:>4}" for k in keys)
    model = result["model"] + (" (random weights)" if result["random_weights"] else "")
    lines = [
        f"{result['title']} {result['split']}: {result['n_pairs']} pairs, {result['n_keypoints']} keypoints, "
        f"model {model}",
        result["protocol"]["summary"],
        result["protocol"]["pck"],
        "",
        header,
        "-" * len(header),
    ]

    def row(label: str, pairs: Any, keypoints: Any, values: dict[str, float | None]) -> str:
        return f"{label:<{width}}  {pairs!s:>6}  {keypoints!s:>7}  " + "  ".join(_cell(values.get(k)) for k in keys)

    for name in names:
        entry = result["per_category"][name]
        lines.append(row(name, entry["n_pairs"], entry["n_keypoints"], entry["pck"]))
    lines.append("-" * len(header))
    lines.append(row(labels[0], result["n_pairs"], result["n_keypoints"], result["pck_per_keypoint"]))
    lines.append(row(labels[1], result["n_pairs_scored"], "", result["pck_per_image"]))
    lines.append(row(labels[2], len(names), "", result["pck_category_mean"]))
    lines.append(row(labels[3], "", "", result["chance"]["pck"]))
    timing = result["timing"]
    lines += [
        "",
        f"category rows and category mean: per {average}; wall time {result['wall_time_s']:.1f} s "
        f"(features {timing['features_s']:.1f} s for {timing['images_computed']} images, "
        f"matching {timing['matching_s']:.1f} s)",
    ]
    alignment = result.get("pose_align") or {}
    if alignment.get("enabled"):
        lines.append(
            f"pose alignment: {alignment['n_flipped']} of {result['n_pairs']} pairs matched from the mirrored source"
        )
    if result.get("warning"):
        lines.append(f"warning: {result['warning']}")
    return "\n".join(lines)


def format_comparison(comparison: dict[str, Any]) -> str:
    """One table for an :func:`~semcorr.eval.evaluate_models` result: the protocol's rules once, then
    one row per model with PCK per image and per keypoint at every threshold."""
    results = comparison["results"]
    first = results[0]
    keys = list(first["pck"])
    names = [r["model"] + (" (random weights)" if r["random_weights"] else "") for r in results]
    width = max(len(n) for n in names + ["model"])
    cells = "  ".join(f"@{k:>4}" for k in keys)
    header = f"{'model':<{width}}  {'input':>14}  {'pairs':>6}  {'kpts':>7}  per image: {cells}  per keypoint: {cells}"
    lines = [
        f"{first['title']} {first['split']}: {len(results)} models",
        first["protocol"]["summary"],
        first["protocol"]["pck"],
        "",
        header,
        "-" * len(header),
    ]
    for name, result in zip(names, results):
        extractor = result["settings"]["extractor"]
        size = f"{extractor['input_size']}² {extractor['resize_mode']}"
        lines.append(
            f"{name:<{width}}  {size:>14}  {result['n_pairs']:>6}  {result['n_keypoints']:>7}  "
            f"{'':10} "
            + "  ".join(_cell(result["pck_per_image"].get(k)) for k in keys)
            + f"  {'':13} "
            + "  ".join(_cell(result["pck_per_keypoint"].get(k)) for k in keys)
        )
    lines += ["", f"wall time {sum(r['wall_time_s'] for r in results):.1f} s"]
    if any(r.get("warning") for r in results):
        lines.append("warning: " + "; ".join(f"{r['model']}: {r['warning']}" for r in results if r.get("warning")))
    return "\n".join(lines)


def format_curve(curve: dict[str, Any]) -> str:
    """The table of an :func:`~semcorr.eval.kshot.evaluate_kshot_curve` result: one row per category
    and one overall, one column per number of examples, at PCK@0.1 (or the middle threshold); then
    the share of keypoints kept at the confidence threshold and their PCK."""
    alphas = curve["alphas"]
    alpha = "0.1" if "0.1" in alphas else alphas[len(alphas) // 2]
    shots = [str(k) for k in curve["shots"]]
    data = curve["curve"]
    first = curve["results"][shots[0]]
    names = list(data["per_category"])
    labels = [
        f"all, per {curve['average']}",
        f"kept at confidence {curve['min_confidence']:g} (%)",
        f"PCK@{alpha} of those kept",
    ]
    width = max(len(n) for n in names + labels + ["category"])
    header = f"{'category':<{width}}  " + "  ".join(f"{k + '-shot':>6}" for k in shots)
    model = curve["model"] + (" (random weights)" if curve["random_weights"] else "")
    lines = [
        f"{curve['title']} {curve['split']}: {curve['n_targets']} targets, the same for every K, model {model}",
        first["protocol"]["summary"].replace(f"{shots[0]} example(s)", "K examples"),
        first["protocol"]["pck"],
        "",
        f"PCK@{alpha}",
        header,
        "-" * len(header),
    ]

    def row(label: str, values: list[float | None]) -> str:
        return f"{label:<{width}}  " + "  ".join(f"{_cell(v):>6}" for v in values)

    for name in names:
        lines.append(row(name, [data["per_category"][name].get(k, {}).get(alpha) for k in shots]))
    lines.append("-" * len(header))
    lines.append(row(labels[0], [data["pck"][k][alpha] for k in shots]))
    lines.append(row(labels[1], [data["kept_percent"][k] for k in shots]))
    lines.append(row(labels[2], [data["pck_kept"][k][alpha] for k in shots]))
    lines += [
        "",
        f"wall time {curve['wall_time_s']:.1f} s (features {first['timing']['features_s']:.1f} s for "
        f"{first['timing']['images_computed']} images; matching "
        + ", ".join(f"{curve['results'][k]['timing']['matching_s']:.1f} s" for k in shots)
        + ")",
    ]
    return "\n".join(lines)
