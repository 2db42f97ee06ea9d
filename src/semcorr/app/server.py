"""The page's server: one page (``static/``) and the JSON API of :mod:`.api`, as Starlette routes
served by uvicorn behind the :class:`~semcorr.app.guard.Guard` (host names, origins, body sizes,
requests at once, slow clients).

It listens on 127.0.0.1 unless told otherwise, answers every error as ``{"error": "..."}`` (the page
shows it; a traceback goes only to the server's log, for errors that are bugs), and writes nothing
outside its temporary folder.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..demo import demo_images
from ..errors import MissingExtraError
from ..features.base import Extractor
from ..features.config import DEFAULT_MODEL
from ..matching.points import MatchSettings
from . import api
from .engine import Engine, load_matchers
from .guard import HttpError, json_endpoint, not_found_route, read_body
from .httpserver import HttpServer
from .settings import AppSettings
from .uploads import Uploads, clean_name, too_large_message
from .web import JSONResponse, Request, Response, Route, Router, run_in_threadpool

MAX_JSON_BYTES = 1_000_000  # a JSON request body (points and settings) is far smaller
UPLOAD_TYPES = ("image/", "application/octet-stream")  # what an upload's Content-Type may say
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-]+\.(html|js|css|png|svg)")
_CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "png": "image/png",
    "svg": "image/svg+xml",
}


class AppServer(HttpServer):
    """The page's server: ``url``, ``engine`` (models, features), ``uploads`` (images in ``folder``).

    Build it with :func:`create_server`; ``start()`` serves from a background thread,
    ``serve_forever()`` from this one; ``close()`` stops serving and removes the temporary folder.
    """

    engine: Engine  # set by create_server, before serving

    def __init__(self, settings: AppSettings, log: Callable[[str], None] = print) -> None:
        super().__init__(Router(routes=_routes(self)), settings, log)
        self.settings: AppSettings = settings
        self._folder = tempfile.TemporaryDirectory(prefix="semcorr-app-")
        self.folder = self._folder.name
        self.uploads = Uploads(self.folder, settings)

    def close(self) -> None:
        super().close()
        self._folder.cleanup()


def create_server(
    model: str | Extractor = DEFAULT_MODEL,
    *,
    models: tuple[str, ...] | list[str] = (),
    settings: AppSettings = AppSettings(),
    match_settings: MatchSettings = MatchSettings(),
    weights: str | None = None,
    random_weights: bool = False,
    device: str | None = None,
    log: Callable[[str], None] = print,
    **overrides: Any,
) -> AppServer:
    """A page server, listening but not yet serving (call ``start()`` or ``serve_forever()``, then ``close()``).

    Args:
        model: the first model offered: a preset (with ``weights``, ``random_weights`` and the
            extractor ``overrides``) or an :class:`Extractor`; ``models``: more presets; ``baseline``
            is always offered. A model whose weights cannot be had is left out with a line to ``log``.
        settings: host, port, allowed host names and limits; ``match_settings``: how points are
            found (as ``semcorr match``).
    """
    server = AppServer(settings, log)
    try:
        examples: tuple[Path, ...]
        try:
            examples = tuple(demo_images())
        except MissingExtraError as error:  # the page works without them: uploads only
            log(f"no example images: {error}")
            examples = ()
        for path in examples:
            server.uploads.add_example(path, path.stem)
        matchers = load_matchers(
            model,
            models=models,
            settings=match_settings,
            weights=weights,
            random_weights=random_weights,
            device=device,
            log=log,
            **overrides,
        )
        server.engine = Engine(matchers, server.uploads, settings)
    except BaseException:
        server.close()
        raise
    return server


def serve(model: str | Extractor = DEFAULT_MODEL, *, log: Callable[[str], None] = print, **options: Any) -> None:
    """``semcorr app``: serve the page until interrupted (Ctrl-C). Takes :func:`create_server`'s arguments."""
    server = create_server(model, log=log, **options)
    offered = ", ".join(item["label"] for item in server.engine.models())
    lines = [f"open {server.url} in a browser (models: {offered}; Ctrl-C stops it)"]
    if server.settings.host in ("0.0.0.0", "::"):
        lines.append("it answers only to the host names 127.0.0.1, localhost and those given with --allowed-host")
    server.serve_until_interrupted("semcorr app", lines)


def _routes(server: AppServer) -> list[Route]:
    """The page, its files, and the API of :mod:`.api` for ``server``."""

    def static(name: str) -> Response:
        folder = resources.files("semcorr.app") / "static"
        if not _STATIC_NAME.fullmatch(name) or not (folder / name).is_file():
            raise HttpError(404, f"{name[:100]}: no such file")
        return Response((folder / name).read_bytes(), media_type=_CONTENT_TYPES[name.rsplit(".", 1)[1]])

    async def page(request: Request) -> Response:
        return static("index.html")

    async def asset(request: Request) -> Response:
        return static(request.path_params["name"])

    async def config(request: Request) -> Response:
        return JSONResponse(api.config(server.engine))

    async def image(request: Request) -> Response:
        found = server.uploads.get(request.path_params["id"])
        return Response(found.display.read_bytes(), media_type="image/png")

    async def upload(request: Request) -> Response:
        kind = request.headers.get("content-type", "").lower()
        if not kind.startswith(UPLOAD_TYPES):
            raise HttpError(415, "send an image file as its own type (image/...) or application/octet-stream")
        if "x-filename" not in request.headers:
            raise HttpError(400, "an upload names its file in an X-Filename header")
        name = clean_name(unquote(request.headers["x-filename"]))
        limit = server.settings.max_upload_bytes
        data = await read_body(request, limit, lambda size: too_large_message(name, size, limit))
        return JSONResponse(await run_in_threadpool(api.upload, server.engine, data, name))

    return [
        Route("/", page, methods=["GET"]),
        Route("/index.html", page, methods=["GET"]),
        Route("/static/{name}", asset, methods=["GET"]),
        Route("/api/config", config, methods=["GET"]),
        Route("/api/images/{id:str}.png", image, methods=["GET"]),
        Route("/api/images", upload, methods=["POST"]),
        *(
            Route(path, json_endpoint(_on_engine(server, function), MAX_JSON_BYTES), methods=["POST"])
            for path, function in api.JSON_ROUTES.items()
        ),
        not_found_route(
            lambda request: f"{request.url.path[:100]}: no such {'page' if request.method == 'GET' else 'request'}"
        ),
    ]


def _on_engine(
    server: AppServer, function: Callable[[Engine, dict[str, Any]], dict[str, Any]]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``function`` of the server's engine (looked up per request: the routes are made before it)."""
    return lambda body: function(server.engine, body)
