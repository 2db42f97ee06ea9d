"""The web framework under semcorr's servers: Starlette's routing, requests and responses, served by
uvicorn. Both come with the ``app`` extra; every module of semcorr that needs them imports them from
here, which stops with one line naming the extra where they are missing."""

from __future__ import annotations

from ..extras import require_extra

PURPOSE = "semcorr's web servers (semcorr app, semcorr label-studio)"
for _module in ("starlette", "uvicorn"):
    require_extra(_module, PURPOSE)

import h11  # noqa: E402  (uvicorn's HTTP/1.1 parser)
import uvicorn  # noqa: E402  (imported after the extra check above)
from starlette.concurrency import run_in_threadpool  # noqa: E402  (imported after the extra check above)
from starlette.requests import ClientDisconnect, Request  # noqa: E402  (imported after the extra check above)
from starlette.responses import JSONResponse, Response  # noqa: E402  (imported after the extra check above)
from starlette.routing import Route, Router  # noqa: E402  (imported after the extra check above)
from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402  (imported after the extra check above)

__all__ = [
    "ClientDisconnect",
    "H11Protocol",
    "JSONResponse",
    "PURPOSE",
    "Request",
    "Response",
    "Route",
    "Router",
    "h11",
    "run_in_threadpool",
    "uvicorn",
]
