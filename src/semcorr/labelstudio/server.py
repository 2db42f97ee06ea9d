"""``semcorr label-studio``: Label Studio's ML backend protocol, on the same stack as the page
(Starlette routes, uvicorn, :class:`~semcorr.app.guard.Guard`).

    GET  /health, GET /    -> {"status": "UP", "model_class": "semcorr", ...}      (Label Studio: 1 s)
    POST /setup            -> {"model_version": "semcorr-MODEL-DIGEST"}            (3 s)
    POST /predict          -> {"results": [{"result": [...], "score", "model_version"}, one per task]}
    POST /webhook          -> {"status": "ok"}  (annotations changed: examples read again when next asked)
    GET  /versions         -> {"versions": [...]}

The routes of Label Studio's own ML backend SDK (``label_studio_ml.api``), with JSON bodies as
``application/json`` and errors as ``{"error": "one line"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..app.guard import json_endpoint, not_found_route
from ..app.httpserver import HttpServer
from ..app.web import JSONResponse, Request, Response, Route, Router
from ..features.base import Extractor
from ..features.config import DEFAULT_MODEL
from ..matching.matcher import Matcher
from ..matching.points import MatchSettings
from .backend import LabelStudioBackend
from .settings import LabelStudioSettings


class BackendServer(HttpServer):
    """The ML backend's server: ``url``, ``backend`` (:class:`LabelStudioBackend`); ``start()`` serves from a
    background thread, ``serve_forever()`` from this one, ``close()`` stops."""

    def __init__(self, backend: LabelStudioBackend, log: Callable[[str], None] = print) -> None:
        super().__init__(Router(routes=_routes(backend)), backend.settings, log)
        self.backend = backend

    def close(self) -> None:
        super().close()
        self.backend.close()


def create_backend_server(
    model: str | Extractor = DEFAULT_MODEL,
    *,
    settings: LabelStudioSettings | None = None,
    match_settings: MatchSettings | None = None,
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    log: Callable[[str], None] = print,
    **overrides: Any,
) -> BackendServer:
    """A Label Studio ML backend, listening but not yet serving.

    Args:
        model: a preset (with ``weights``, ``random_weights``, ``device`` and the extractor
            ``overrides``) or an :class:`Extractor`, loaded now (``/health`` and ``/setup`` must answer
            within Label Studio's 1 and 3 s).
        settings: Label Studio's address and key, ``min_confidence``, host, port and limits.
        match_settings: how points are matched (as ``semcorr transfer``).
        log: told one line per thing the backend could not use.
    """
    settings = settings or LabelStudioSettings()
    matcher = Matcher(
        model,
        weights=weights,
        random_weights=random_weights,
        device=device,
        settings=match_settings or MatchSettings(),
        **overrides,
    )
    return BackendServer(LabelStudioBackend(matcher, settings, log), log)


def serve_backend(
    model: str | Extractor = DEFAULT_MODEL, *, log: Callable[[str], None] = print, **options: Any
) -> None:
    """``semcorr label-studio``: serve until interrupted (Ctrl-C). Takes :func:`create_backend_server`'s arguments."""
    server = create_backend_server(model, log=log, **options)
    server.serve_until_interrupted(
        "semcorr label-studio",
        [
            f"connect {server.url} in Label Studio (project Settings -> Model -> Connect Model; model "
            f"{server.backend.model}; Ctrl-C stops it)"
        ],
    )


def _routes(backend: LabelStudioBackend) -> list[Route]:
    limit = backend.settings.max_json_bytes

    async def health(request: Request) -> Response:
        return JSONResponse(backend.health())

    async def versions(request: Request) -> Response:
        return JSONResponse(backend.versions())

    return [
        Route("/", health, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/versions", versions, methods=["GET"]),
        Route("/setup", json_endpoint(backend.setup, limit), methods=["POST"]),
        Route("/predict", json_endpoint(backend.predict, limit), methods=["POST"]),
        Route("/webhook", json_endpoint(backend.webhook, limit, threaded=False), methods=["POST"]),  # within LS's 1 s
        not_found_route(
            lambda request: (
                f"{request.url.path[:100]}: no such request (Label Studio's ML backend protocol: "
                "/health, /setup, /predict, /webhook, /versions)"
            )
        ),
    ]
