"""``semcorr eval BENCHMARK --data-root PATH``: :func:`semcorr.eval.evaluate` (or
:func:`semcorr.eval.evaluate_models` with ``--models``), its table and files; ``semcorr compare
A.json B.json ...``: :func:`semcorr.eval.compare.compare_results` of results files, one table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..data.benchmarks import BENCHMARKS
from ..errors import InputError
from ..eval.protocols import ALIASES, DEFAULT_PROTOCOL, PROTOCOLS, get_protocol
from .options import add_match_options, add_model_options, given, match_settings, model_arguments, warn_random_weights

PCK_OPTIONS = ("alphas", "threshold", "average")


def _loader_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--loader-option: {text!r} is not KEY=VALUE (e.g. layout=small)")
    value = value.strip()
    parsed: Any = int(value) if value.isdigit() else None if value.lower() in ("none", "null") else value
    return key.strip().replace("-", "_"), parsed


def run_eval(args: argparse.Namespace) -> int:
    from ..eval.kshot import evaluate_kshot, evaluate_kshot_curve
    from ..eval.pck import PCKSettings
    from ..eval.report import format_comparison, format_curve, format_table
    from ..eval.runner import evaluate, evaluate_models
    from ..fileio import check_output_file, write_json

    if args.models and args.save_predictions:
        raise InputError("--save-predictions writes one model's predictions; drop it with --models")
    protocol = get_protocol(args.protocol).name  # an old name warns once, here
    if args.transfer_shots is not None and (args.models or protocol != DEFAULT_PROTOCOL):
        raise InputError(
            f"--transfer-shots evaluates one model (--model) with the {DEFAULT_PROTOCOL} protocol's "
            "matching; drop --models and --protocol"
        )
    for path, what in ((args.out, "result"), (args.save_predictions, "predictions")):
        if path:
            check_output_file(path, suffixes=(".json",), what=what)
    fields = given(args, PCK_OPTIONS)
    pck = PCKSettings(
        **{**fields, **({"alphas": tuple(fields["alphas"])} if "alphas" in fields else {})}, inclusive=not args.strict
    )
    loader_options = dict(_loader_option(o) for o in args.loader_option)
    options = dict(
        split=args.split,
        settings=match_settings(args),
        pck=pck,
        limit=args.limit,
        batch_size=args.batch_size,
        cache=args.cache,
        cache_dir=args.cache_dir,
        loader_options=loader_options,
        progress=not args.quiet,
        pose_align=args.pose_align,
        **model_arguments(args),
    )
    if args.models:
        options.pop("model")
        comparison = evaluate_models(args.benchmark, args.data_root, args.models, protocol=protocol, **options)
        if args.out:
            write_json(args.out, comparison)
        print(format_comparison(comparison))
        random = any(r["random_weights"] for r in comparison["results"])
    elif args.transfer_shots is not None and len(args.transfer_shots) > 1:
        curve = evaluate_kshot_curve(
            args.benchmark,
            args.data_root,
            shots=args.transfer_shots,
            seed=args.transfer_seed,
            predictions=bool(args.save_predictions),
            **options,
        )
        records = [
            dict(record, shots=int(k))
            for k, result in curve["results"].items()
            for record in result.pop("predictions", [])
        ]
        if args.save_predictions:
            write_json(args.save_predictions, records, indent=None)
        if args.out:
            write_json(args.out, curve)
        print(format_curve(curve))
        random = curve["random_weights"]
    else:
        if args.transfer_shots is not None:
            result = evaluate_kshot(
                args.benchmark,
                args.data_root,
                shots=args.transfer_shots[0],
                seed=args.transfer_seed,
                predictions=bool(args.save_predictions),
                **options,
            )
        else:
            result = evaluate(
                args.benchmark, args.data_root, protocol=protocol, predictions=bool(args.save_predictions), **options
            )
        records = result.pop("predictions", None)
        if args.save_predictions:
            write_json(args.save_predictions, records, indent=None)
        if args.out:
            write_json(args.out, result)
        print(format_table(result))
        random = result["random_weights"]
    if random:
        warn_random_weights("the scores carry")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "eval",
        help="PCK of a model on a benchmark (SPair-71k, PF-WILLOW, PF-PASCAL, CUB, AP-10K)",
        description="Evaluate a model (or several, --models) on a semantic correspondence benchmark under a named "
        "protocol. The default, semcorr (semcorr's own rules): the model's own input (434x434 stretch for "
        "the student), features upsampled to 60x60, 11x11 window soft-argmax, PCK of the target box's "
        "longer side (the image's for PF-PASCAL) averaged per keypoint, <=, in original pixels, keypoints "
        "outside their image left out. distilldift-paper, marco, diy-sc and geco are those authors' code "
        "(input size, matcher, average, comparison, frame, threshold scale; keypoints outside the image "
        "counted); common is one rule for every model. The result and the table list every rule of the "
        "protocol used; --out writes a versioned results file for `semcorr compare`.",
    )
    parser.add_argument("benchmark", metavar="BENCHMARK", help=f"one of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--data-root", required=True, help="the benchmark's folder in its official layout")
    parser.add_argument("--split", help="default: test")
    add_model_options(parser)
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="evaluate several presets in one run and print one table, a row per model (per-image "
        "and per-keypoint PCK); replaces --model",
    )
    parser.add_argument(
        "--protocol",
        choices=[*PROTOCOLS, *ALIASES],
        default=DEFAULT_PROTOCOL,
        help=f"the evaluation rules (default {DEFAULT_PROTOCOL}): "
        + "; ".join(f"{name}: {p.source}" for name, p in PROTOCOLS.items())
        + f". The matching and PCK options below apply to {DEFAULT_PROTOCOL} (--alpha to all); "
        + "; ".join(f"{old}: an old name of {new}" for old, (new, _) in ALIASES.items()),
    )
    add_match_options(parser)
    parser.add_argument(
        "--alpha",
        dest="alphas",
        type=float,
        nargs="+",
        metavar="A",
        help="PCK thresholds (default: 0.1 0.05 0.01; PF-PASCAL and PF-WILLOW 0.05 0.1 0.15)",
    )
    parser.add_argument(
        "--threshold",
        choices=["bbox", "image"],
        help="L = longer side of the target box or image (default: bbox; image for PF-PASCAL)",
    )
    parser.add_argument(
        "--average",
        choices=["keypoint", "image"],
        help="average of the headline PCK and category rows (default keypoint; both are in --out)",
    )
    parser.add_argument("--strict", action="store_true", help="correct if distance < alpha*L (default <=)")
    parser.add_argument(
        "--pose-align",
        action="store_true",
        help="weakly supervised setting: also match from each mirrored source image and keep, per "
        "pair, the orientation whose mutual nearest neighbours agree best (GeoAware-SC)",
    )
    parser.add_argument(
        "--transfer-shots",
        type=int,
        nargs="+",
        metavar="K",
        help="k-shot label transfer instead of pairs: K examples per category, PCK of their keypoints "
        "transferred to every other image of the category (semcorr transfer); several K (e.g. "
        "1 3 5): the curve, every K on the same targets (the images none of the largest K's "
        "examples), the examples of a smaller K among those of a larger",
    )
    parser.add_argument("--transfer-seed", type=int, default=0, help="seed of the examples' draw (default 0)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N pairs (a quick look)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per extractor call (default 8)")
    parser.add_argument(
        "--cache",
        choices=["auto", "memory", "disk"],
        default="auto",
        help="where features are kept: auto = memory for small sets, disk for large ones",
    )
    parser.add_argument("--cache-dir", help="keep features on disk here (fp16 safetensors per image) and reuse them")
    parser.add_argument(
        "--loader-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the loader, e.g. layout=small (SPair), crowd_file=PATH (AP-10K), n_pairs=4000 (CUB)",
    )
    parser.add_argument(
        "--out",
        metavar="JSON",
        help="write the results file: model and weights digest, every rule "
        "of the protocol, pair-list digest, per-category PCK, settings, timing (read by `semcorr "
        "compare`)",
    )
    parser.add_argument(
        "--save-predictions",
        metavar="JSON",
        help="write per pair what an independent check needs: [{id, category, source_image, "
        "target_image, source_size, target_size, keypoint_ids, source_points, pred, gt, "
        "target_box, threshold_length, thresholds, comparison, frame}, ...], points in original "
        "pixels",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_eval)

    compare = commands.add_parser(
        "compare",
        help="results files side by side (semcorr eval --out), one column each",
        description="One table of PCK per category and overall, one column per result (a `semcorr eval --out` file, "
        "or each model of a --models file). Results of different protocols (any rule) or pair lists are "
        "refused unless --allow-mixed; files of another kind or version are refused.",
    )
    compare.add_argument("files", nargs="+", metavar="JSON", help="results files")
    compare.add_argument(
        "--allow-mixed",
        action="store_true",
        help="show results of different protocols or pair lists side by side (each column says which)",
    )
    compare.add_argument("--alpha", type=float, help="the threshold shown (default 0.1, else the first result's first)")
    compare.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from ..eval.compare import compare_results, format_result_columns, read_results

    results, labels = [], []
    stems = [Path(path).stem for path in args.files]
    for path in args.files:
        found = read_results(path)
        results += found
        stem = Path(path).stem
        if stems.count(stem) > 1:  # files of one name in different folders: name the folder too
            stem = f"{Path(path).parent.name}/{stem}"
        if len(found) == 1:
            labels.append(stem)
        elif len({r["model"] for r in found}) == len(found):
            labels += [f"{stem}:{r['model']}" for r in found]
        else:  # a k-shot curve: one model, one result per number of examples
            labels += [f"{stem}:{r['protocol'].get('shots', i + 1)}-shot" for i, r in enumerate(found)]
    labels = [
        label if not labels[:i].count(label) else f"{label}#{labels[:i].count(label) + 1}"
        for i, label in enumerate(labels)
    ]
    print(format_result_columns(compare_results(results, labels, allow_mixed=args.allow_mixed, alpha=args.alpha)))
    return 0
