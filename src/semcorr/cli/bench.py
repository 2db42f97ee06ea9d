"""``semcorr bench`` (feature extraction per model), ``semcorr bench-train`` (a training step of the
student), ``semcorr bench-sdxl`` (the SDXL-Turbo teacher) and ``semcorr bench-decode`` (decoding
images for extraction): :mod:`semcorr.perf`."""

from __future__ import annotations

import argparse
import json

from ..settings import PRECISIONS
from .options import add_model_options, add_threads_option, model_spec


def run_bench(args: argparse.Namespace) -> int:
    from ..fileio import check_output_file, write_json
    from ..perf.extraction import BenchSettings, format_speed_table
    from ..perf.extraction import run_bench as bench
    from ..runtime import set_threads

    if args.out:
        check_output_file(args.out, suffixes=(".json",), what="results")
    set_threads(args.threads)
    settings = BenchSettings(
        models=tuple(args.models),
        input_sizes=tuple(args.sizes or ()),
        batch_sizes=tuple(args.batch_sizes),
        precisions=tuple(args.precision),
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
        random_weights=args.random_weights,
        reference=args.reference,
        compile=args.compile,
        interleave=args.interleave,
        adapter=args.adapter,
    )
    result = bench(settings, progress=not args.quiet)
    print(format_speed_table(result))
    if args.out:
        write_json(args.out, result)
    return 0


def run_train_step(args: argparse.Namespace) -> int:
    from ..perf.train_step import format_train_step_table, run_train_step_bench
    from ..runtime import set_threads

    set_threads(args.threads)
    result = run_train_step_bench(
        precisions=args.precision,
        input_size=args.input_size,
        pairs=args.pairs,
        runs=args.runs,
        warmup=args.warmup,
        device=args.device,
    )
    print(json.dumps(result, indent=2) if args.json else format_train_step_table(result))
    return 0


def run_sdxl(args: argparse.Namespace) -> int:
    from ..perf.sdxl import run_sdxl_bench

    run_sdxl_bench(
        precisions=args.precision,
        runs=args.runs,
        component_runs=args.component_runs,
        timesteps=args.timesteps,
        input_size=args.input_size,
        flops_only=args.flops_only,
        log=lambda line: print(line, flush=True),
    )
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from ..fileio import write_json
    from ..perf.decode import bench_decode, format_decode_table

    result = bench_decode(
        args.images,
        model=model_spec(args),
        workers=args.workers,
        batch_size=args.batch_size,
        limit=args.limit,
        repeats=args.repeats,
    )
    print(format_decode_table(result))
    if args.out:
        write_json(args.out, result)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="images/s, latency, peak memory and parameters per model")
    bench.add_argument("--models", nargs="+", default=["baseline", "dinov2-b-reg"], help="preset names")
    bench.add_argument("--sizes", nargs="+", type=int, help="input sizes (default: each model's own)")
    bench.add_argument("--batch-sizes", nargs="+", type=int, default=[1], help="default 1")
    bench.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32"])
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    bench.add_argument("--repeats", type=int, default=5, help="timed calls per configuration (median; default 5)")
    bench.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    bench.add_argument("--random-weights", action="store_true", help="untrained models: same cost, no download")
    bench.add_argument(
        "--reference",
        help="model to compare throughput with (default: student if registered, "
        "else dinov2-b-reg, the student's cost with LoRA merged)",
    )
    bench.add_argument(
        "--adapter",
        help="LoRA adapter folder for the models that take one (student); "
        "without it the student keeps its zero-initialised LoRA layers unmerged",
    )
    bench.add_argument(
        "--interleave",
        action="store_true",
        help="time all configurations round-robin (fairer on a loaded machine; keeps every model in memory)",
    )
    bench.add_argument("--out", help="also write the results as JSON here")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.add_argument("--compile", action="store_true", help="torch.compile the model (slow first batch)")
    add_threads_option(bench)
    bench.set_defaults(run=run_bench)

    step = commands.add_parser(
        "bench-train",
        help="seconds per training step of the full-size student "
        "(random weights; forward of a pair, loss against 2048-channel teacher features, "
        "backward, AdamW)",
    )
    step.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    step.add_argument("--input-size", type=int, default=434)
    step.add_argument("--pairs", type=int, default=1, help="pairs per step")
    step.add_argument("--runs", type=int, default=5, help="timed steps (median; default 5)")
    step.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    step.add_argument("--device", default="cpu")
    step.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_threads_option(step)
    step.set_defaults(run=run_train_step)

    sdxl = commands.add_parser(
        "bench-sdxl",
        help="seconds per image of the full-size SDXL-Turbo teacher (random "
        "weights), by part, and its UNet FLOPs and cache bytes per image",
    )
    sdxl.add_argument(
        "--runs",
        type=int,
        default=3,
        help="timed end-to-end extractions per precision (median; 0: estimate from the parts)",
    )
    sdxl.add_argument("--component-runs", type=int, default=3, help="timed calls of each part (median)")
    sdxl.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS)
    sdxl.add_argument("--timesteps", type=int, default=4, choices=[1, 2, 3, 4], help="UNet passes per image")
    sdxl.add_argument("--input-size", type=int, default=980, help="canvas side (default 980: grid 31)")
    sdxl.add_argument("--flops-only", action="store_true", help="only count FLOPs and cache bytes")
    sdxl.set_defaults(run=run_sdxl)

    decode = commands.add_parser(
        "bench-decode",
        help="images/s of reading, decoding and resizing images onto a "
        "model's canvas, alone, per number of decoding workers (what --workers needs)",
    )
    decode.add_argument("images", help="a folder of images (searched recursively) or a text file listing them")
    add_model_options(decode, "student")
    decode.add_argument(
        "--workers",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        help="decoding processes to compare (0: in the main process; default 0 1 2)",
    )
    decode.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    decode.add_argument("--limit", type=int, help="only the first N images")
    decode.add_argument("--repeats", type=int, default=3, help="timed passes per configuration (median; default 3)")
    decode.add_argument("--out", help="also write the results as JSON here")
    decode.set_defaults(run=run_decode)
