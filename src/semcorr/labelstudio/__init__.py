"""``semcorr label-studio``: a Label Studio ML backend that pre-labels keypoints by label transfer
from the project's own annotated tasks.

    from semcorr.labelstudio import LabelStudioSettings, serve_backend
    serve_backend("baseline", settings=LabelStudioSettings(url="http://localhost:8080", api_key=KEY))

The protocol's routes (:mod:`.server`) run on the page's stack (:mod:`semcorr.app.httpserver`);
the work (:mod:`.backend`) reads the project's labelling config and annotated tasks (:mod:`.project`)
through Label Studio's API (:mod:`.client`). Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "LabelStudioSettings": "settings",
    "LabelStudioBackend": "backend",
    "LabelStudioClient": "client",
    "LabelStudioError": "client",
    "KeypointConfig": "project",
    "TaskExample": "project",
    "read_label_config": "project",
    "project_examples": "project",
    "BackendServer": "server",
    "create_backend_server": "server",
    "serve_backend": "server",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
