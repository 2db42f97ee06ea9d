"""Serving an ASGI application (Starlette routes) with uvicorn behind :class:`~semcorr.app.guard.Guard`,
on a socket bound when the server is made, so that a busy port is one line before any model loads.

    server = HttpServer(router, ServerSettings(port=0))
    server.start()              # serve from a background thread (or serve_forever() in this one)
    print(server.url); ...; server.close()

uvicorn's HTTP/1.1 protocol is given a deadline for each request's headers (``client_timeout``;
:class:`~semcorr.app.guard.Guard` bounds the body), so a client that connects and sends slowly or
nothing holds its connection that long at most; connections are capped at four times
``max_requests``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import InputError
from .guard import ASGIApp, Guard
from .settings import ServerSettings
from .web import H11Protocol, h11, uvicorn

STARTUP_TIMEOUT = 30.0  # seconds for uvicorn to start serving in a background thread


class HttpServer:
    """An ASGI ``app`` behind a :class:`Guard`, served by uvicorn on ``settings.host`` and ``settings.port``.

    Attributes:
        url: the server's address (for a server on every interface, this machine's loopback one).
        server_address: (host, port) of the listening socket.
    """

    def __init__(self, app: ASGIApp, settings: ServerSettings, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.log = log
        self._socket = _listen(settings.host, settings.port)
        self.server_address: tuple[str, int] = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            Guard(app, settings, log),
            http=_bounded_protocol(settings.client_timeout),
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level=logging.CRITICAL,  # our Guard logs what matters
            limit_concurrency=4 * settings.max_requests,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def server_port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if self._socket.family == socket.AF_INET else "::1"
        return f"http://[{host}]:{self.server_port}" if ":" in host else f"http://{host}:{self.server_port}"

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`shutdown` (from another thread) or Ctrl-C (in the main
        thread: uvicorn stops, then the interrupt goes on as a ``KeyboardInterrupt``)."""
        self._server.run(sockets=[self._socket])

    def serve_until_interrupted(self, name: str, lines: list[str]) -> None:
        """Log ``lines`` (each after ``name:``), serve in this thread until Ctrl-C, then close."""
        try:
            for line in lines:
                self.log(f"{name}: {line}")
            self.serve_forever()
        except KeyboardInterrupt:
            self.log(f"{name}: stopped")
        finally:
            self.close()

    def start(self) -> HttpServer:
        """Serve from a background thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self.serve_forever, name="semcorr-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.01)
        return self

    def shutdown(self) -> None:
        """Stop serving (requests under way finish, for at most 5 s); waits for a background thread."""
        self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        """Stop serving if it serves, and release the socket."""
        self.shutdown()
        self._socket.close()

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host`` and ``port`` (an IPv6 one for an address with ':')."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError as error:
        listener.close()
        raise InputError(
            f"cannot listen on {host} port {port} ({error.strerror or error}); choose another --port (or --host)"
        ) from None
    listener.setblocking(False)
    return listener


def _bounded_protocol(timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol, closing a connection whose next request's headers are not all
    there ``timeout`` seconds after the connection opened or the last answer was sent."""

    class BoundedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return BoundedH11Protocol
