"""``semcorr app``: the page where a click on image A shows where that point is in image B
(:func:`semcorr.app.serve`)."""

from __future__ import annotations

import argparse

from ..app.settings import AppSettings
from .options import add_match_options, add_model_options, add_threads_option, given, match_settings, model_arguments

APP_OPTIONS = ("host", "port", "max_upload_mb", "max_megapixels")


def run_app(args: argparse.Namespace) -> int:
    from ..app.server import serve
    from ..runtime import set_threads

    settings = AppSettings(**given(args, APP_OPTIONS))
    set_threads(args.threads)
    serve(models=args.models, settings=settings, match_settings=match_settings(args), **model_arguments(args))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    defaults = AppSettings()
    app = commands.add_parser("app", help="a web page: click a point of image A, see where it is in image B")
    app.add_argument("--host", help=f"address to listen on (default {defaults.host}: this machine only; "
                     "0.0.0.0 for every interface)")
    app.add_argument("--port", type=int, help=f"port (default {defaults.port}; 0: any free port)")
    app.add_argument("--models", nargs="+", default=[], metavar="NAME",
                     help="more presets to offer besides --model, each from its default weights (the weight-free "
                     "baseline is always offered; a model whose weights cannot be had is left out)")
    app.add_argument("--max-upload-mb", type=float, help=f"largest image file accepted (default {defaults.max_upload_mb:g})")
    app.add_argument("--max-megapixels", type=float,
                     help=f"most pixels an image may have, in millions (default {defaults.max_megapixels:g})")
    add_model_options(app)
    add_match_options(app)
    add_threads_option(app)
    app.set_defaults(run=run_app)
