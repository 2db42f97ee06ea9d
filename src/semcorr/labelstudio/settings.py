"""The settings of ``semcorr label-studio``. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..app.settings import ServerSettings
from ..settings import check_int, check_number, check_text, fail

DEFAULT_BACKEND_PORT = 9090  # Label Studio's ML backend SDK's port


@dataclass(frozen=True)
class LabelStudioSettings(ServerSettings):
    """The backend's server (:class:`~semcorr.app.settings.ServerSettings`; images read from Label
    Studio obey its ``max_upload_mb`` and ``max_megapixels``) and how it predicts.

    Attributes:
        url: Label Studio's address; ``None``: the one Label Studio gives in ``/setup``.
        api_key: the key the backend reads projects and images with; ``None``: the one Label Studio
            gives in ``/setup`` (only with ``url`` unset: a configured key goes to the configured address only).
        min_confidence: keypoints predicted with a lower confidence are left out.
        cached_images: images whose features are kept (examples and tasks).
        max_json_mb: the largest JSON request (a ``/predict`` carries every task Label Studio asks for).
        batch_size: tasks labelled at once.
    """

    port: int = DEFAULT_BACKEND_PORT
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    min_confidence: float = 0.5
    cached_images: int = 256
    max_json_mb: float = 64.0
    batch_size: int = 8

    OPTIONS = {"allowed_hosts": "--allowed-host", "api_key": "LABEL_STUDIO_API_KEY"}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_text(self, "url")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise fail(self, "url", "must be an http:// or https:// address")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise fail(self, "api_key", "must be a non-empty string", value="(hidden)")
        if self.api_key is not None and self.url is None:
            raise fail(self, "url", "must be given with an API key (the key goes to that address only)")
        check_number(self, "min_confidence", minimum=0, maximum=1)
        check_int(self, "cached_images", minimum=1)
        check_number(self, "max_json_mb", above=0)
        check_int(self, "batch_size", minimum=1)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_mb * 1_000_000)
