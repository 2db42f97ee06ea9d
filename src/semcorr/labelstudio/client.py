"""Label Studio's API, as the backend needs it: a project's annotated tasks, and the bytes of a task's
image. Standard library only (:mod:`urllib`).

The key goes only to Label Studio's own address (``url``), never to another host: an image URL on
another host is read without it, and a redirect (a cloud storage's signed URL) is followed without
it. A legacy API key is sent as ``Authorization: Token KEY``; a personal access token (a JWT) is
exchanged for a short-lived access token (``POST /api/token/refresh/``), sent as ``Bearer``, and
exchanged again when it expires.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..errors import SemcorrError

TIMEOUT = 30.0  # seconds for one call to Label Studio


class LabelStudioError(SemcorrError):
    """Label Studio cannot be reached, refused the key, or answered something else than expected."""


class LabelStudioClient:
    """Calls to one Label Studio with one key.

    Args:
        url: Label Studio's address (``http://localhost:8080``).
        key: a legacy API key or a personal access token.
    """

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise LabelStudioError(f"Label Studio's address {url[:100]!r} is not an http(s) URL")
        if not key:
            raise LabelStudioError(
                "no Label Studio API key: set LABEL_STUDIO_API_KEY (Account & Settings -> Access Token in Label Studio)"
            )
        self.url = url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc.lower())
        self._key = key
        self._access: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"LabelStudioClient({self.url!r})"

    def uses(self, url: str, key: str) -> bool:
        """Whether this client calls ``url`` with ``key``."""
        return self.url == url.rstrip("/") and self._key == key

    def annotated_tasks(self, project: int) -> list[dict[str, Any]]:
        """The project's tasks that have annotations, each with them (Label Studio's JSON export)."""
        answer = json.loads(self._get(f"/api/projects/{int(project)}/export?exportType=JSON", 512_000_000))
        if not isinstance(answer, list):
            raise LabelStudioError(f"project {project}: the export is not a list of tasks")
        return answer

    def image(self, url: str, limit: int) -> bytes:
        """The bytes of a task's image at ``url`` (relative to Label Studio's address, or absolute),
        refused when over ``limit`` bytes."""
        absolute = urljoin(self.url + "/", url)
        parts = urlsplit(absolute)
        if parts.scheme not in ("http", "https"):
            raise LabelStudioError(f"{url[:100]}: semcorr reads images over http(s) only, not {parts.scheme}://")
        return self._get(absolute, limit, with_key=(parts.scheme, parts.netloc.lower()) == self._origin)

    def _get(self, path_or_url: str, limit: int, *, with_key: bool = True) -> bytes:
        url = urljoin(self.url + "/", path_or_url)
        for attempt in range(2):
            request = urllib.request.Request(url, headers={"Accept": "*/*"})
            if with_key:  # an unredirected header: a redirect does not carry the key elsewhere
                request.add_unredirected_header("Authorization", self._authorization(refresh=attempt > 0))
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                    return _read(response, limit, url)
            except urllib.error.HTTPError as error:
                if error.code == 401 and with_key and attempt == 0 and self._is_token():
                    continue  # the access token expired: exchange the personal token again
                raise LabelStudioError(_refusal(url, error.code, with_key)) from None
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise LabelStudioError(f"{_short(url)}: cannot be reached ({reason})") from None
        raise LabelStudioError(_refusal(url, 401, with_key))

    def _is_token(self) -> bool:
        """Whether the key is a personal access token (a JWT: three base64 parts), not a legacy key."""
        return self._key.count(".") == 2 and self._key.startswith("eyJ")

    def _authorization(self, *, refresh: bool) -> str:
        if not self._is_token():
            return f"Token {self._key}"
        with self._lock:
            if self._access is None or refresh:
                body = json.dumps({"refresh": self._key}).encode()
                request = urllib.request.Request(
                    self.url + "/api/token/refresh/", data=body, headers={"Content-Type": "application/json"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                        self._access = str(json.loads(_read(response, 1_000_000, request.full_url))["access"])
                except urllib.error.HTTPError as error:
                    raise LabelStudioError(_refusal(request.full_url, error.code, True)) from None
                except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as error:
                    raise LabelStudioError(
                        f"{self.url}: cannot exchange the personal access token ({getattr(error, 'reason', error)})"
                    ) from None
            return f"Bearer {self._access}"


def _read(response: Any, limit: int, url: str) -> bytes:
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise LabelStudioError(f"{_short(url)}: {int(length) / 1e6:.1f} MB is over the limit of {limit / 1e6:g} MB")
    data = response.read(limit + 1)
    if len(data) > limit:
        raise LabelStudioError(f"{_short(url)}: over the limit of {limit / 1e6:g} MB")
    return bytes(data)


def _refusal(url: str, status: int, with_key: bool) -> str:
    if status in (401, 403) and with_key:
        return (
            f"{_short(url)}: Label Studio refused the key (HTTP {status}); give a key of a user who may read "
            "the project (LABEL_STUDIO_API_KEY)"
        )
    return f"{_short(url)}: HTTP {status}"


def _short(url: str) -> str:
    """A URL for a message: without its query (signed URLs carry secrets there), at most 120 characters."""
    parts = urlsplit(url)
    text = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return text if len(text) <= 120 else text[:117] + "..."
