"""The settings of ``semcorr app``: where it listens and what it accepts. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import check_int, check_number, check_text

DEFAULT_PORT = 7860  # Gradio's and Hugging Face Spaces' port


@dataclass(frozen=True)
class AppSettings:
    """Where the page is served and the limits on what users send.

    Attributes:
        host: the address to listen on; ``127.0.0.1`` (this machine only) unless told otherwise.
        port: the port (0: any free port).
        max_upload_mb: the largest image file accepted, in MB (10^6 bytes).
        max_megapixels: the most pixels an image may have, in millions.
        max_images: uploaded images kept; the oldest upload is dropped beyond this.
        max_points: points per request.
        max_targets: images one label transfer may carry the points to.
        cached_features: feature maps kept in memory (one per model, image and orientation).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_upload_mb: float = 20.0
    max_megapixels: float = 20.0
    max_images: int = 64
    max_points: int = 64
    max_targets: int = 16
    cached_features: int = 32

    def __post_init__(self) -> None:
        check_text(self, "host", optional=False)
        check_int(self, "port", minimum=0, maximum=65535)
        check_number(self, "max_upload_mb", above=0)
        check_number(self, "max_megapixels", above=0)
        check_int(self, "max_images", minimum=2)
        check_int(self, "max_points", minimum=1)
        check_int(self, "max_targets", minimum=1)
        check_int(self, "cached_features", minimum=2)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)
