"""``semcorr app``: a web page to judge a model by clicking. A click on image A shows the similarity
heatmap of that point over image B and its best match.

    from semcorr.app import serve
    serve("baseline")                       # http://127.0.0.1:7860, until Ctrl-C

Starlette routes served by uvicorn (:mod:`.server`, on :mod:`.httpserver`, behind the checks of
:mod:`.guard`) serve one page (``static/``) and a small JSON API (:mod:`.api`); images live in a
temporary folder (:mod:`.uploads`), features are computed once per model and image (:mod:`.engine`).
The same stack serves ``semcorr label-studio`` (:mod:`semcorr.labelstudio`). Names load on first
use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "AppSettings": "settings",
    "ServerSettings": "settings",
    "AppServer": "server",
    "create_server": "server",
    "serve": "server",
    "Engine": "engine",
    "load_matchers": "engine",
    "Uploads": "uploads",
    "Upload": "uploads",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
