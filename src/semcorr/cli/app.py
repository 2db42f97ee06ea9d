"""``semcorr app``: the page where a click on image A shows where that point is in image B
(:func:`semcorr.app.serve`)."""

from __future__ import annotations

import argparse

from ..app.settings import AppSettings, ServerSettings
from .options import add_match_options, add_model_options, add_threads_option, given, match_settings, model_arguments

SERVER_OPTIONS = ("host", "port", "allowed_hosts", "max_upload_mb", "max_megapixels")  # add_server_options


def run_app(args: argparse.Namespace) -> int:
    from ..app.server import serve  # without the app extra: one line naming it, before any model loads
    from ..runtime import set_threads

    settings = AppSettings(**given(args, SERVER_OPTIONS))
    set_threads(args.threads)
    serve(models=args.models, settings=settings, match_settings=match_settings(args), **model_arguments(args))
    return 0


def add_server_options(parser: argparse.ArgumentParser, defaults: ServerSettings) -> None:
    """--host, --port, --allowed-host, --max-upload-mb and --max-megapixels (:class:`ServerSettings`)."""
    parser.add_argument(
        "--host", help=f"address to listen on (default {defaults.host}: this machine only; 0.0.0.0 for every interface)"
    )
    parser.add_argument("--port", type=int, help=f"port (default {defaults.port}; 0: any free port)")
    parser.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        action="append",
        metavar="NAME",
        help="a host name the server answers to besides 127.0.0.1, localhost and --host (repeat "
        "for more; '*' for any, only behind a proxy that checks names): a request whose Host "
        "header names another is refused, so that other web pages cannot reach it (DNS rebinding)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, help=f"largest image file accepted (default {defaults.max_upload_mb:g})"
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        help=f"most pixels an image may have, in millions (default {defaults.max_megapixels:g})",
    )


def register(commands: argparse._SubParsersAction) -> None:
    app = commands.add_parser("app", help="a web page: click a point of image A, see where it is in image B")
    add_server_options(app, AppSettings())
    app.add_argument(
        "--models",
        nargs="+",
        default=[],
        metavar="NAME",
        help="more presets to offer besides --model, each from its default weights (the weight-free "
        "baseline is always offered; a model whose weights cannot be had is left out)",
    )
    add_model_options(app)
    add_match_options(app)
    add_threads_option(app)
    app.set_defaults(run=run_app)
