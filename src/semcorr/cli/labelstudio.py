"""``semcorr label-studio``: a Label Studio ML backend that pre-labels keypoints
(:func:`semcorr.labelstudio.serve_backend`)."""

from __future__ import annotations

import argparse
import os

from ..labelstudio.settings import LabelStudioSettings
from .app import SERVER_OPTIONS, add_server_options
from .options import add_match_options, add_model_options, add_threads_option, given, match_settings, model_arguments

BACKEND_OPTIONS = (*SERVER_OPTIONS, "url", "min_confidence")
KEY_VARIABLE = "LABEL_STUDIO_API_KEY"


def run_label_studio(args: argparse.Namespace) -> int:
    from ..labelstudio.server import serve_backend  # without the app extra: one line naming it
    from ..runtime import set_threads

    options = given(args, BACKEND_OPTIONS)
    options.setdefault("url", os.environ.get("LABEL_STUDIO_URL") or None)
    settings = LabelStudioSettings(api_key=os.environ.get(KEY_VARIABLE) or None, **options)
    set_threads(args.threads)
    serve_backend(settings=settings, match_settings=match_settings(args), **model_arguments(args))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    defaults = LabelStudioSettings()
    parser = commands.add_parser(
        "label-studio",
        help="a Label Studio ML backend: pre-labels keypoints from the project's annotated tasks",
        description=f"Label Studio's ML backend protocol (/health, /setup, /predict, /webhook). The API key is read "
        f"from {KEY_VARIABLE} (never from the command line); without --url and a key, the backend uses the "
        "address and key Label Studio gives it when it connects.",
    )
    add_server_options(parser, defaults)
    parser.add_argument(
        "--url",
        help="Label Studio's address, e.g. http://localhost:8080 (default $LABEL_STUDIO_URL, "
        "else the address Label Studio gives when it connects)",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        help=f"leave out keypoints predicted with a lower confidence, in [0, 1] (default {defaults.min_confidence:g})",
    )
    add_model_options(parser)
    add_match_options(parser)
    add_threads_option(parser)
    parser.set_defaults(run=run_label_studio)
