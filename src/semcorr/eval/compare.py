"""``semcorr compare A.json B.json ...``: results files side by side, one column each.

    results = [*read_results("a.json"), *read_results("b.json")]
    table = compare_results(results)                 # refuses other protocols or pair lists
    print(format_result_columns(table))

A column is one result of :func:`semcorr.eval.evaluate` (a ``semcorr eval --out`` file, or each
model of a ``--models`` file). Columns measured under different rules (any rule of the protocol,
PCK settings included) or on different pair lists (:func:`~.digest.pairs_digest`) are not
comparable: they are refused unless ``allow_mixed`` (then each column says what it was measured with).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError
from ..fileio import read_json
from .pck import alpha_key
from .result import RESULT_CURVE_FORMAT, RESULT_FORMAT, RESULT_SET_FORMAT, RESULT_VERSION

# protocol keys that describe the rules in words (or say where they come from) rather than fix one
WORDING = ("summary", "pck", "source", "deviations")
REQUIRED = (
    "benchmark",
    "split",
    "model",
    "protocol",
    "pairs_digest",
    "per_category",
    "pck_per_keypoint",
    "pck_per_image",
    "pck_category_mean",
    "n_pairs",
    "n_keypoints",
)


def _checked(value: Any, path: str) -> dict[str, Any]:
    """One result of a results file, checked for kind, version and the keys a comparison reads."""
    if not isinstance(value, dict) or "format" not in value:
        raise InputError(f"{path}: not a semcorr results file (no 'format' field; write one with semcorr eval --out)")
    if value["format"] != RESULT_FORMAT:
        raise InputError(f"{path}: not a semcorr results file (format {value['format']!r})")
    _check_version(value, path)
    missing = [key for key in REQUIRED if key not in value]
    if missing:
        raise InputError(f"{path}: a damaged semcorr results file (no {', '.join(repr(k) for k in missing)})")
    return value


def _check_version(value: dict[str, Any], path: str | Path) -> None:
    if value.get("version") != RESULT_VERSION:
        raise InputError(
            f"{path}: semcorr results file version {value.get('version')!r}; this semcorr ({__version__}) "
            f"reads version {RESULT_VERSION}"
        )


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The results in a results file: one (``semcorr eval --out``) or several (``--models``, or a
    ``--transfer-shots K1 K2 ...`` curve).

    Raises:
        InputError: naming the file: not JSON, not a semcorr results file, another version.
    """
    content = read_json(path)
    if isinstance(content, dict) and content.get("format") in (RESULT_SET_FORMAT, RESULT_CURVE_FORMAT):
        _check_version(content, path)
        results = content.get("results")
        if isinstance(results, dict):  # a k-shot curve: one result per number of examples
            results = list(results.values())
        if not isinstance(results, list) or not results:
            raise InputError(f"{path}: a damaged semcorr results file (no 'results' list)")
        return [_checked(result, f"{path} (result {i + 1})") for i, result in enumerate(results)]
    return [_checked(content, str(path))]


def measured_rules(result: dict[str, Any]) -> dict[str, Any]:
    """Every rule of the protocol a result was measured with (its wording left out) and its PCK
    settings (the threshold length as the benchmark resolved it; the alphas may differ)."""
    rules = {key: value for key, value in result["protocol"].items() if key not in WORDING}
    pck = {key: value for key, value in (result.get("settings", {}).get("pck") or {}).items() if key != "alphas"}
    return {**rules, "threshold": pck.get("threshold", rules.get("threshold")), "pck": pck}


def compare_results(
    results: Sequence[dict[str, Any]],
    labels: Sequence[str] | None = None,
    *,
    allow_mixed: bool = False,
    alpha: float | None = None,
) -> dict[str, Any]:
    """The comparison table of ``results`` as data.

    Args:
        results: results of :func:`read_results` (or of :func:`~semcorr.eval.evaluate`).
        labels: one name per column (default: the model names).
        allow_mixed: put results of different protocols or pair lists side by side (each column
            then names its protocol and pair list).
        alpha: the threshold shown (default 0.1 where every result has it, else the first result's first).
    Returns:
        ``{"title", "alpha", "columns": [{"label", "model", "weights_digest", "protocol", "summary",
        "pairs_digest", "n_pairs", "n_keypoints"}], "rows": [(name, [value per column])], "mixed"}``.
    Raises:
        InputError: fewer than one result, an alpha none has, or (without ``allow_mixed``) a result
            of another protocol or pair list than the first, naming it.
    """
    if not results:
        raise InputError("compare needs at least one results file")
    labels = list(labels) if labels is not None else [r["model"] for r in results]
    first, first_rules = results[0], measured_rules(results[0])
    mixed = False
    for label, result in zip(labels[1:], results[1:]):
        if measured_rules(result) != first_rules:
            mixed = True
            if not allow_mixed:
                raise InputError(
                    f"{label}: measured under protocol {result['protocol']['name']} with other rules than "
                    f"{labels[0]} ({first['protocol']['name']}); pass --allow-mixed to show them anyway"
                )
        if result["pairs_digest"] != first["pairs_digest"]:
            mixed = True
            if not allow_mixed:
                raise InputError(
                    f"{label}: another pair list than {labels[0]} ({result['benchmark']} "
                    f"{result['split']}, {result['n_pairs']} pairs, vs {first['benchmark']} "
                    f"{first['split']}, {first['n_pairs']} pairs); pass --allow-mixed to show them anyway"
                )
    keys = [set(r["pck_per_keypoint"]) for r in results]
    shown = (
        alpha_key(alpha)
        if alpha is not None
        else ("0.1" if all("0.1" in k for k in keys) else next(iter(first["pck_per_keypoint"])))
    )
    if not any(shown in k for k in keys):
        raise InputError(f"--alpha {shown}: no result has PCK at that threshold")
    categories = sorted({name for r in results for name in r["per_category"]})
    rows = [(name, [_headline(r["per_category"].get(name), shown) for r in results]) for name in categories]
    rows += [
        ("all, per keypoint", [r["pck_per_keypoint"].get(shown) for r in results]),
        ("all, per image", [r["pck_per_image"].get(shown) for r in results]),
        ("category mean", [r["pck_category_mean"].get(shown) for r in results]),
    ]
    columns = [
        {
            "label": label,
            "model": r["model"],
            "weights_digest": r.get("weights_digest"),
            "protocol": r["protocol"]["name"],
            "summary": r["protocol"].get("summary", ""),
            "pairs_digest": r["pairs_digest"],
            "n_pairs": r["n_pairs"],
            "n_keypoints": r["n_keypoints"],
        }
        for label, r in zip(labels, results)
    ]
    title = f"{first.get('title', first['benchmark'])} {first['split']}"
    return {"title": title, "alpha": shown, "columns": columns, "rows": rows, "mixed": mixed}


def _headline(entry: dict[str, Any] | None, key: str) -> float | None:
    return None if entry is None else entry.get("pck", {}).get(key)


def format_result_columns(comparison: dict[str, Any]) -> str:
    """A plain-text table of :func:`compare_results`: one row per category and the three overall
    figures, one column per result."""
    columns, rows = comparison["columns"], comparison["rows"]
    width = max(len(name) for name, _ in rows + [("category", [])])
    cell = max(8, *(len(c["label"]) for c in columns))
    header = f"{'PCK@' + comparison['alpha']:<{width}}  " + "  ".join(f"{c['label']:>{cell}}" for c in columns)
    lines = [f"{comparison['title']}: {len(columns)} result(s)"]
    if comparison["mixed"]:
        lines.append(
            "mixed: the columns were measured under different rules or on different pairs "
            "(--allow-mixed); compare them with care"
        )
        lines += [
            f"  {c['label']}: {c['summary']}; pairs {c['pairs_digest'][:19]} ({c['n_pairs']} pairs)" for c in columns
        ]
    else:
        lines += [
            columns[0]["summary"],
            f"pairs {columns[0]['pairs_digest'][:19]} ({columns[0]['n_pairs']} pairs, "
            f"{columns[0]['n_keypoints']} keypoints)",
        ]
    lines += ["", header, "-" * len(header)]
    for i, (name, values) in enumerate(rows):
        if i == len(rows) - 3:
            lines.append("-" * len(header))
        lines.append(
            f"{name:<{width}}  " + "  ".join(f"{'-' if v is None else format(v, '.1f'):>{cell}}" for v in values)
        )
    lines += [
        "",
        "weights: " + "; ".join(f"{c['label']} {c['model']} {_short(c['weights_digest'])}" for c in columns),
        "category rows: each result's headline average (see its protocol)",
    ]
    return "\n".join(lines)


def _short(digest: str | None) -> str:
    if digest is None:
        return "(no weights)"
    return f"({digest[:19]})" if digest.startswith("sha256:") else f"({digest})"
