"""The chat page: ``/`` (under a strict Content-Security-Policy) and ``GET /profile``.

The page is plain HTML, CSS and JavaScript in ``twin_server/static``, served
by Flask's own ``/static`` route (the app's static folder, since the app is
named after this package); there is no build step. ``/profile`` gives the page
its header: the persona's name and one-line intro.

``TWIN_FRAME_ANCESTORS`` lists who may show the page in an iframe (CSP
``frame-ancestors`` sources, separated by spaces or commas; default ``'self'``),
e.g. ``https://me.example.com`` to embed it on a personal site.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from twin_server import config as settings
from twin_server.app_state import twin

bp = Blueprint("twin_page", __name__)

EXTENSION_KEY = "twin_page"
DEFAULT_FRAME_ANCESTORS = "'self'"

#: A CSP host source: scheme://host[:port], optionally with a leading "*." wildcard label.
_HOST_SOURCE = re.compile(r"(https?://)?(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:(\d{1,5}|\*))?")
_KEYWORDS = {"'self'", "'none'"}
_SCHEMES = {"https:", "http:"}


def frame_ancestors(config) -> str:
    """The ``frame-ancestors`` sources from ``TWIN_FRAME_ANCESTORS``; ValueError names a bad one."""
    sources = [s for s in re.split(r"[\s,]+", settings.get_str(config, "FRAME_ANCESTORS") or "") if s]
    if not sources:
        return DEFAULT_FRAME_ANCESTORS
    for source in sources:
        if source.lower() in _KEYWORDS or source.lower() in _SCHEMES or _HOST_SOURCE.fullmatch(source):
            continue
        raise ValueError(
            f"TWIN_FRAME_ANCESTORS: {source!r} is not a frame-ancestors source "
            "(use 'self', 'none' or origins like https://me.example.com, separated by spaces or commas)"
        )
    if "'none'" in (s.lower() for s in sources) and len(sources) > 1:
        raise ValueError("TWIN_FRAME_ANCESTORS: 'none' cannot be combined with other sources")
    return " ".join(sources)


def content_security_policy(ancestors: str) -> str:
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            f"frame-ancestors {ancestors}",
            "base-uri 'none'",
            "form-action 'self'",
        )
    )


def check(config: Mapping[str, Any]) -> list[str]:
    """The problem with ``TWIN_FRAME_ANCESTORS``, for ``create_app``'s StartupError."""
    try:
        frame_ancestors(config)
    except ValueError as exc:
        return [str(exc)]
    return []


def install(app: Flask) -> None:
    """Register the page on ``app`` (after ``check`` found no problem)."""
    app.extensions[EXTENSION_KEY] = {"csp": content_security_policy(frame_ancestors(app.config))}
    app.register_blueprint(bp)


@bp.get("/")
def index() -> Response:
    response = current_app.send_static_file("index.html")
    response.headers["Content-Security-Policy"] = current_app.extensions[EXTENSION_KEY]["csp"]
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/profile")
def profile() -> Response:
    """Who the page is about: ``{"name", "intro", "model"}`` (a problem document if the persona fails)."""
    state = twin()
    persona = state.turns.persona()
    response = jsonify(name=persona.full_name, intro=persona.intro, model=state.backends.names()["llm"])
    response.headers["Cache-Control"] = "no-cache"
    return response
