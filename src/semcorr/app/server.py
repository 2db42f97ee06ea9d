"""The HTTP server of ``semcorr app``: the standard library's threading server, one page, the JSON
API of :mod:`.api`.

It listens on 127.0.0.1 unless told otherwise, refuses bodies over the limits before reading them,
answers every error as ``{"error": "..."}`` (the page shows it; a traceback goes only to the
server's log, for errors that are bugs), and writes nothing outside its temporary folder.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import tempfile
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from ..demo import demo_images
from ..errors import MissingExtraError, InputError, SemcorrError
from ..features.base import Extractor
from ..features.config import DEFAULT_MODEL
from ..matching.points import MatchSettings
from . import api
from .engine import Engine, load_matchers
from .settings import AppSettings
from .uploads import Uploads, clean_name, too_large_message

MAX_JSON_BYTES = 1_000_000  # a JSON request body (points and settings) is far smaller
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-]+\.(html|js|css|png|svg)")
_CONTENT_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
                  "css": "text/css; charset=utf-8", "png": "image/png", "svg": "image/svg+xml",
                  "json": "application/json"}
_IMAGE_URL = re.compile(r"/api/images/([A-Za-z0-9_-]{1,64})\.png")
_PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'"


class HttpError(Exception):
    """A request refused before it reaches the API: its status and the message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AppServer(ThreadingHTTPServer):
    """The page's server: ``url``, ``engine`` (models, features), ``uploads`` (images in ``folder``).

    Build it with :func:`create_server`; ``serve_forever()`` serves; ``close()`` stops listening
    and removes the temporary folder.
    """

    daemon_threads = True
    engine: Engine  # set by create_server, before serving

    def __init__(self, settings: AppSettings, log: Callable[[str], None] = print) -> None:
        self.address_family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        try:
            super().__init__((settings.host, settings.port), Handler)
        except OSError as error:
            raise InputError(f"cannot listen on {settings.host} port {settings.port} ({error.strerror or error}); "
                             "choose another --port (or --host)") from None
        self.settings = settings
        self._folder = tempfile.TemporaryDirectory(prefix="semcorr-app-")
        self.folder = self._folder.name
        self.uploads = Uploads(self.folder, settings)
        self.log = log

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # without HTTPServer's reverse DNS lookup of the host
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def url(self) -> str:
        """The page's address (for a server on every interface, this machine's loopback one)."""
        host = str(self.server_address[0])
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if self.address_family == socket.AF_INET else "::1"
        return f"http://[{host}]:{self.server_port}" if ":" in host else f"http://{host}:{self.server_port}"

    def close(self) -> None:
        self.server_close()
        self._folder.cleanup()


def create_server(model: str | Extractor = DEFAULT_MODEL, *, models: tuple[str, ...] | list[str] = (),
                  settings: AppSettings = AppSettings(), match_settings: MatchSettings = MatchSettings(),
                  weights: str | None = None, random_weights: bool = False, device: str | None = None,
                  log: Callable[[str], None] = print, **overrides: Any) -> AppServer:
    """A page server, listening but not yet serving (call ``serve_forever()``, then ``close()``).

    Args:
        model: the first model offered: a preset (with ``weights``, ``random_weights`` and the
            extractor ``overrides``) or an :class:`Extractor`; ``models``: more presets; ``baseline``
            is always offered. A model whose weights cannot be had is left out with a line to ``log``.
        settings: host, port and limits; ``match_settings``: how points are found (as ``semcorr match``).
    """
    server = AppServer(settings, log)
    try:
        examples: tuple[Path, ...]
        try:
            examples = demo_images()
        except MissingExtraError as error:  # the page works without them: uploads only
            log(f"no example images: {error}")
            examples = ()
        for path in examples:
            server.uploads.add_example(path, path.stem)
        matchers = load_matchers(model, models=models, settings=match_settings, weights=weights,
                                 random_weights=random_weights, device=device, log=log, **overrides)
        server.engine = Engine(matchers, server.uploads, settings)
    except BaseException:
        server.close()
        raise
    return server


def serve(model: str | Extractor = DEFAULT_MODEL, *, log: Callable[[str], None] = print, **options: Any) -> None:
    """``semcorr app``: serve the page until interrupted (Ctrl-C). Takes :func:`create_server`'s arguments."""
    server = create_server(model, log=log, **options)
    try:
        offered = ", ".join(item["label"] for item in server.engine.models())
        log(f"semcorr app: open {server.url} in a browser (models: {offered}; Ctrl-C stops it)")
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        log("semcorr app: stopped")
    finally:
        server.close()


class Handler(BaseHTTPRequestHandler):
    """Routes a request to the page, a static file or :mod:`.api`; every answer has a length."""

    server: AppServer
    server_version = "semcorr-app"
    timeout = 60  # seconds a connection may stay silent (a body announced but never sent)

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged; errors that are bugs are (:meth:`_answer`)."""

    def _get(self, path: str) -> tuple[int, str, bytes]:
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/api/config":
            return _json(api.config(self.server.engine))
        found = _IMAGE_URL.fullmatch(path)
        if found:
            image = self.server.uploads.get(found.group(1))
            return 200, _CONTENT_TYPES["png"], image.display.read_bytes()
        raise HttpError(404, f"{path[:100]}: no such page")

    def _post(self, path: str) -> tuple[int, str, bytes]:
        engine = self.server.engine
        if path == "/api/images":
            name = clean_name(unquote(self.headers.get("X-Filename", "upload")))
            return _json(api.upload(engine, self._body(self.server.settings.max_upload_bytes, name), name))
        if path in api.JSON_ROUTES:
            try:
                body = json.loads(self._body(MAX_JSON_BYTES))
            except ValueError:
                raise InputError("the request body is not JSON") from None
            if not isinstance(body, dict):
                raise InputError("the request body must be a JSON object")
            return _json(api.JSON_ROUTES[path](engine, body))
        raise HttpError(404, f"{path[:100]}: no such request")

    def _body(self, limit: int, upload: str | None = None) -> bytes:
        """The request body (a file named ``upload``, else JSON), refused unread when over ``limit`` bytes."""
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            raise HttpError(411, "the request has no length (Content-Length)")
        size = int(length)
        if size > limit:
            self.close_connection = True
            raise HttpError(413, too_large_message(upload, size, limit) if upload else
                            f"the request is over {limit} bytes")
        try:
            body = self.rfile.read(size)
        except TimeoutError:
            body = b""
        if len(body) != size:
            self.close_connection = True
            raise HttpError(400, f"{upload or 'the request'}: the body ended after {len(body)} of {size} bytes")
        return body

    def _static(self, name: str) -> tuple[int, str, bytes]:
        folder = resources.files("semcorr.app") / "static"
        if not _STATIC_NAME.fullmatch(name) or not (folder / name).is_file():
            raise HttpError(404, f"{name[:100]}: no such file")
        return 200, _CONTENT_TYPES[name.rsplit(".", 1)[1]], (folder / name).read_bytes()

    def _answer(self, route: Callable[[str], tuple[int, str, bytes]]) -> None:
        path = urlsplit(self.path).path
        try:
            status, content_type, body = route(path)
        except HttpError as error:
            status, content_type, body = _error(error.status, str(error))
        except SemcorrError as error:
            status, content_type, body = _error(400, " ".join(str(error).split()))
        except Exception as error:  # a bug: the page gets one line, the log the traceback
            self.server.log(f"semcorr app: {self.command} {path}: internal error\n{traceback.format_exc()}")
            status, content_type, body = _error(500, f"internal error: {type(error).__name__}: "
                                                     f"{' '.join(str(error).split())} (the server's log has the details)")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", _PAGE_POLICY)
        self.end_headers()
        self.wfile.write(body)


def _json(value: dict[str, Any], status: int = 200) -> tuple[int, str, bytes]:
    return status, _CONTENT_TYPES["json"], json.dumps(value, allow_nan=False).encode()


def _error(status: int, message: str) -> tuple[int, str, bytes]:
    return _json({"error": message}, status)
