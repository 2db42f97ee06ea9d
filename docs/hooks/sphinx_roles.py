"""MkDocs hook: the Sphinx roles of semcorr's docstrings (``:class:`Matcher```, ``:func:`~semcorr.x.f```)
shown as plain code in the API reference, as Sphinx would show them (``~`` keeps the last name only)."""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:mod|class|func|meth|data|attr|exc|obj):<code>(~?)([^<]*)</code>")


def _plain(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return ROLE.sub(_plain, html)
