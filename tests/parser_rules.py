"""The rules of semcorr.cli.parser, checked with the standard library alone (run by tests/test_cli.py,
and by hand with any other Python: ``python3.13 tests/parser_rules.py``)."""

import contextlib
import importlib.util
import io
import sys
import warnings
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "semcorr_cli_parser", Path(__file__).resolve().parents[1] / "src" / "semcorr" / "cli" / "parser.py"
)
parser_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parser_module)
Parser, PointsAction = parser_module.Parser, parser_module.PointsAction
add_old_spelling = parser_module.add_old_spelling


def build():
    parser = Parser(prog="semcorr")
    commands = parser.add_subparsers(dest="command", required=True)
    match = commands.add_parser("match")
    match.add_argument("image_a")
    match.add_argument("image_b")
    match.add_argument("--points", nargs="+", action=PointsAction)
    match.add_argument("--temperature", type=float)
    match.add_argument("--model")
    train = commands.add_parser("finetune-3d")
    group = train.add_mutually_exclusive_group(required=True)
    group.add_argument("--pair-file")
    group.add_argument("--benchmark")
    train.add_argument("--pairs-per-step", type=int, default=1)
    add_old_spelling(
        train,
        "--pairs",
        "--pair-file",
        until="0.3.0",
        fields=lambda value: {"benchmark": value} if value == "spair" else {"pair_file": value},
    )
    return parser


def parse(*argv):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = build().parse_args(list(argv))
    return args, [str(w.message) for w in caught]


def error(*argv):
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):
        try:
            build().parse_args(list(argv))
        except SystemExit as exit_:
            return exit_.code, stream.getvalue()
    raise AssertionError(f"{argv} parsed")


def check():
    args, _ = parse("match", "a.png", "b.png", "--points", "-5,10", "-.5,3", "--temperature", "-1e-3")
    assert args.points == ["-5,10", "-.5,3"] and args.temperature == -1e-3, args
    args, _ = parse("match", "--points", "1,2", "-3,4", "a.png", "b.png", "--model", "m")
    assert (args.image_a, args.image_b, args.points, args.model) == ("a.png", "b.png", ["1,2", "-3,4"], "m"), args
    args, _ = parse("match", "a.png", "--points", "1,2", "b.png")
    assert (args.image_a, args.image_b) == ("a.png", "b.png") and not hasattr(args, "images_after_points"), args
    assert error("match", "--points", "1,2", "a.png") == (
        2,
        "semcorr match: error: the following arguments are required: image_b (see `semcorr match --help`)\n",
    )
    assert error("match", "a.png", "b.png", "--points", "c.png")[1].startswith(
        "semcorr match: error: argument --points: expected at least one argument"
    )
    assert error("match", "a.png", "b.png", "--mod", "m")[1].startswith(
        "semcorr: error: unrecognized arguments: --mod m"
    )
    args, warned = parse("finetune-3d", "--pairs", "p.h5")
    assert (args.pair_file, args.benchmark, args.pairs_per_step) == ("p.h5", None, 1), args
    assert warned == ["--pairs is now --pair-file; the old spelling works until semcorr 0.3.0"], warned
    args, warned = parse("finetune-3d", "--pairs", "spair")
    assert (args.pair_file, args.benchmark) == (None, "spair") and warned == [
        "--pairs spair is now --benchmark spair; the old spelling works until semcorr 0.3.0"
    ], (args, warned)
    assert "--pairs " not in build()._subparsers._group_actions[0].choices["finetune-3d"].format_help()
    code, message = error("finetune-3d", "--pairs", "a.h5", "--benchmark", "spair")
    assert code == 2 and "not allowed with" in message, message


if __name__ == "__main__":
    check()
    print(f"parser rules hold on Python {sys.version.split()[0]}")
