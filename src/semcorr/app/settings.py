"""The settings of semcorr's web servers (``semcorr app``, ``semcorr label-studio``): where they
listen, whom they answer and what they accept. Torch-free and web-framework-free."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..settings import check_int, check_number, check_text, fail

DEFAULT_PORT = 7860  # Gradio's and Hugging Face Spaces' port
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_HOST = "*"
_HOST_NAME = re.compile(r"[A-Za-z0-9._:-]{1,253}")


@dataclass(frozen=True)
class ServerSettings:
    """Where a server listens, which host names it answers to and the limits on what clients send.

    Attributes:
        host: the address to listen on; ``127.0.0.1`` (this machine only) unless told otherwise.
        port: the port (0: any free port).
        allowed_hosts: host names (or addresses) a request's ``Host`` header may name, besides
            ``127.0.0.1``, ``localhost``, ``::1`` and ``host``; ``"*"`` allows any (no protection from
            DNS rebinding: only behind a proxy that checks the name itself).
        max_requests: requests handled at once; more are answered 503 at once.
        client_timeout: seconds a client may take to send a request's headers, and again its body.
        max_upload_mb: the largest image file accepted, in MB (10^6 bytes).
        max_megapixels: the most pixels an image may have, in millions.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allowed_hosts: tuple[str, ...] = ()
    max_requests: int = 16
    client_timeout: float = 60.0
    max_upload_mb: float = 20.0
    max_megapixels: float = 20.0

    OPTIONS = {"allowed_hosts": "--allowed-host"}

    def __post_init__(self) -> None:
        check_text(self, "host", optional=False)
        check_int(self, "port", minimum=0, maximum=65535)
        if isinstance(self.allowed_hosts, list):
            object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        names = self.allowed_hosts
        if not isinstance(names, tuple) or not all(
            isinstance(name, str) and (name == ANY_HOST or _HOST_NAME.fullmatch(name)) for name in names
        ):
            raise fail(
                self,
                "allowed_hosts",
                "must be host names or addresses (letters, digits, '.', '-', ':'), or '*' for any",
            )
        check_int(self, "max_requests", minimum=1)
        check_number(self, "client_timeout", above=0)
        check_number(self, "max_upload_mb", above=0)
        check_number(self, "max_megapixels", above=0)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    def host_names(self) -> frozenset[str]:
        """The names a request's ``Host`` may give (lower case; ``"*"`` among them: any)."""
        names = {*LOOPBACK_HOSTS, *self.allowed_hosts}
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(self.host)
        return frozenset(name.lower().strip("[]").rstrip(".") for name in names)


@dataclass(frozen=True)
class AppSettings(ServerSettings):
    """The page's server (:class:`ServerSettings`) and what the page keeps.

    Attributes:
        max_images: uploaded images kept; the oldest upload is dropped beyond this.
        max_points: points per request.
        max_targets: images one label transfer may carry the points to.
        cached_features: feature maps kept in memory (one per model, image and orientation).
    """

    max_images: int = 64
    max_points: int = 64
    max_targets: int = 16
    cached_features: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self, "max_images", minimum=2)
        check_int(self, "max_points", minimum=1)
        check_int(self, "max_targets", minimum=1)
        check_int(self, "cached_features", minimum=2)
