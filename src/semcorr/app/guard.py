"""What every request to semcorr's web servers passes first (an ASGI middleware), and how handlers
read bodies within bounds.

:class:`Guard` answers, before the application sees the request:

* a ``Host`` header that is not one of the server's names (:meth:`ServerSettings.host_names`): 421, so
  a web page on another name that resolves to this machine (DNS rebinding) reaches nothing;
* a request that changes state (any method but GET, HEAD, OPTIONS) from another origin: 403, when its
  ``Origin`` is not this server's own or its ``Sec-Fetch-Site`` says another site (cross-site forgery);
* more than ``max_requests`` requests at once: 503;
* a body that takes longer than ``client_timeout`` seconds to arrive: 408.

Handlers read bodies with :func:`read_body` (a length limit checked before reading and while
reading) or :func:`read_json` (``application/json`` only: a form or a ``text/plain`` body, which
another site's page may send without asking, is refused). Every error is ``{"error": "one line"}``:
:class:`HttpError` and :class:`~semcorr.errors.SemcorrError` say what is wrong (400 for the latter),
anything else is a bug, answered ``internal error`` with the traceback only in the server's log.
Every answer says ``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``; HTML pages
get a content security policy that loads nothing from elsewhere and may not be framed.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import SemcorrError
from .settings import ANY_HOST, ServerSettings
from .web import ClientDisconnect, JSONResponse, Request, Response, Route, run_in_threadpool

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
)


class HttpError(Exception):
    """A request refused: its status and the one-line message the client is given."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def one_line(text: str, limit: int = 400) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def error_body(message: str) -> bytes:
    return json.dumps({"error": one_line(message)}).encode()


def request_host(scope: Scope) -> str | None:
    """The host name of a request's ``Host`` header, lower case, without port, brackets or final dot."""
    value = header(scope, "host")
    if not value:
        return None
    found = urlsplit("//" + value)
    try:
        found.port  # noqa: B018 (a malformed port raises)
    except ValueError:
        return None
    name = found.hostname
    return name.rstrip(".") if name else None


def header(scope: Scope, name: str) -> str | None:
    """The first value of header ``name`` (lower case) of a request, decoded as Latin-1."""
    wanted = name.encode()
    for key, value in scope.get("headers", ()):
        if key == wanted:
            return value.decode("latin-1")
    return None


class Guard:
    """The ASGI middleware of the module docstring around ``app``.

    Args:
        settings: the server's names and limits.
        log: where bugs (with their traceback) and refused requests go, one call per event.
    """

    def __init__(self, app: ASGIApp, settings: ServerSettings, log: Callable[[str], None]) -> None:
        self.app = app
        self.settings = settings
        self.hosts = settings.host_names()
        self.log = log
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self._refusal(scope)
        if refusal is not None:
            return await send_error(send, *refusal)
        if self.active >= self.settings.max_requests:
            return await send_error(
                send, 503, f"the server is busy ({self.settings.max_requests} requests at once); try again"
            )
        self.active += 1
        started = {"sent": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                started["sent"] = True
                headers = list(message.get("headers", []))
                headers += [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
                if any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    headers += [(b"content-security-policy", PAGE_POLICY.encode()), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, self._bounded(receive), send_with_headers)
        except Exception as error:  # noqa: BLE001 (every error becomes one line)
            status, message = self._error(scope, error)
            if not started["sent"]:
                await send_error(send, status, message)
        finally:
            self.active -= 1

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        host = request_host(scope)
        if ANY_HOST not in self.hosts and host not in self.hosts:
            shown = one_line(header(scope, "host") or "", 80)
            return 421, (
                f"host {shown!r} is not one this server answers to; start it with --allowed-host NAME to "
                "serve that name"
                if shown
                else "the request has no Host header"
            )
        if scope["method"] in SAFE_METHODS:
            return None
        origin = header(scope, "origin")
        site = header(scope, "sec-fetch-site")
        if origin is not None:
            parts = urlsplit(origin)
            own = header(scope, "host") or ""
            if parts.scheme not in ("http", "https") or parts.netloc.lower() != own.lower():
                return 403, f"a {scope['method']} from another origin ({one_line(origin, 80)}) is refused"
        if site in ("cross-site", "same-site"):
            return 403, f"a {scope['method']} from another site is refused"
        return None

    def _bounded(self, receive: Receive) -> Receive:
        """``receive`` whose body messages must all arrive within ``client_timeout`` seconds."""
        deadline = time.monotonic() + self.settings.client_timeout
        done = {"body": False}

        async def bounded() -> Message:
            if done["body"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except (asyncio.TimeoutError, TimeoutError):
                raise HttpError(
                    408, f"the request's body did not arrive within {self.settings.client_timeout:g} s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done["body"] = True
            return message

        return bounded

    def _error(self, scope: Scope, error: Exception) -> tuple[int, str]:
        if isinstance(error, HttpError):
            return error.status, str(error)
        if isinstance(error, SemcorrError):
            return 400, str(error)
        if isinstance(error, ClientDisconnect):  # nobody is left to answer
            return 400, "the client went away"
        self.log(f"{scope['method']} {scope['path'][:100]}: internal error\n{traceback.format_exc()}")
        return 500, "internal error (the server's log has the details)"


async def send_error(send: Send, status: int, message: str) -> None:
    """Answer ``{"error": message}`` with ``status`` and close the connection."""
    body = error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(request: Request, limit: int, too_large: Callable[[int], str] | None = None) -> bytes:
    """A starlette request's body: refused (413) unread when its ``Content-Length`` is over ``limit``
    bytes, and as soon as more than ``limit`` bytes arrive (a chunked body).

    Args:
        too_large: the message for a body of that many bytes (default: ``the request is over N bytes``).
    """
    message = too_large or (lambda size: f"the request is over {limit} bytes")
    length = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if length is None and not chunked:
        raise HttpError(411, "the request has no length (Content-Length)")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HttpError(
            413 if length.isdigit() else 400,
            message(int(length)) if length.isdigit() else "the request's Content-Length is not a number",
        )
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, message(size))
        parts.append(chunk)
    return b"".join(parts)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """A JSON object sent as ``application/json`` (415 for any other type), within ``limit`` bytes."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HttpError(415, f"send JSON as application/json (not {one_line(kind, 60) or 'no type'})")
    body = await read_body(request, limit)
    try:
        value = json.loads(body)
    except ValueError:
        raise HttpError(400, "the request body is not JSON") from None
    if not isinstance(value, dict):
        raise HttpError(400, "the request body must be a JSON object")
    return value


def json_endpoint(
    function: Callable[[dict[str, Any]], dict[str, Any]], limit: int, *, threaded: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    """A POST endpoint: the request's JSON object (:func:`read_json`, within ``limit`` bytes) to
    ``function``, its answer as JSON; ``function`` runs in a worker thread unless ``threaded`` is False."""

    async def endpoint(request: Request) -> Response:
        body = await read_json(request, limit)
        return JSONResponse(await run_in_threadpool(function, body) if threaded else function(body))

    return endpoint


def not_found_route(message: Callable[[Request], str]) -> Route:
    """The last route: any other path, with any method, is a 404 saying ``message(request)`` (a
    route rather than the router's default, which would answer a wrong method with 405)."""

    async def not_found(request: Request) -> Response:
        raise HttpError(404, message(request))

    return Route("/{path:path}", not_found, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
