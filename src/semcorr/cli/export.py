"""``semcorr export-onnx --model student --size 434 --out student.onnx``: :func:`semcorr.export.export_onnx`."""

from __future__ import annotations

import argparse

from ..errors import InputError, SettingError
from ..export import ONNX_OPSET
from .options import warn_random_weights


def run_export_onnx(args: argparse.Namespace) -> int:
    from ..demo import demo_images
    from ..export.onnx import export_onnx, format_report, require_onnx
    from ..features.registry import build_extractor
    from ..fileio import check_output_file, write_json

    require_onnx()  # before building a model: fail fast with the install hint
    check_output_file(args.out, suffixes=(".onnx",), what="ONNX model")
    if args.json:
        check_output_file(args.json, suffixes=(".json",), what="report")
    overrides = {"adapter": args.adapter} if args.adapter else {}
    try:
        extractor = build_extractor(
            args.model,
            weights=args.weights,
            random_weights=args.random_weights,
            device="cpu",
            input_size=args.size,
            **overrides,
        )
    except SettingError as error:
        if error.field != "input_size":
            raise
        raise InputError(f"--size {args.size}: {error.requirement}") from None
    image = args.image or (None if args.random_pixels else str(demo_images()[0]))
    report = export_onnx(
        extractor,
        args.out,
        size=args.size,
        batch_size=args.batch_size,
        opset=args.opset,
        tolerance=args.tolerance,
        images=None if image is None else [image] * args.batch_size,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
    )
    print(format_report(report))
    if args.json:
        write_json(args.json, report.to_dict())
    if report.random_weights:
        warn_random_weights("the exported features carry")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export-onnx",
        help="export the student (or another DINOv2-based model) to "
        "ONNX at a fixed input size, check it against PyTorch with onnxruntime and time "
        "both on CPU",
    )
    export.add_argument(
        "--model", default="student", help="student (default), a distilldift-* preset or a dinov2-* preset"
    )
    export.add_argument("--weights", help="Hugging Face id, local folder or checkpoint file for the backbone")
    export.add_argument("--adapter", help="student: LoRA adapter folder (RUN/adapter of `semcorr distill`), merged")
    export.add_argument("--random-weights", action="store_true", help="untrained weights (timing and tests)")
    export.add_argument("--size", type=int, default=434, help="fixed input side S, a multiple of 14 (default 434)")
    export.add_argument("--batch-size", type=int, default=1, help="fixed batch size B (default 1)")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--opset", type=int, default=ONNX_OPSET, help=f"ONNX opset (default {ONNX_OPSET})")
    export.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest allowed max abs difference of the features, onnxruntime vs PyTorch (default 1e-4)",
    )
    export.add_argument("--image", help="image for the check (default: scikit-image's motorcycle_left.png)")
    export.add_argument("--random-pixels", action="store_true", help="check on random pixels instead of an image")
    export.add_argument(
        "--runs",
        type=int,
        default=5,
        help="timed runs of each runtime, round-robin; the median is reported (default 5; 0: no timing)",
    )
    export.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    export.add_argument("--threads", type=int, help="CPU threads for both runtimes (default: torch's choice)")
    export.add_argument("--json", help="also write the report as JSON here")
    export.set_defaults(run=run_export_onnx)
