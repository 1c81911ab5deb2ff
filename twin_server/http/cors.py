"""Cross-origin access to the API, for a chat widget on another site.

``TWIN_CORS_ORIGINS`` is a comma-separated list of origins allowed to call the
API from a browser (``https://me.example.com,https://www.me.example.com``), or
``*`` for any origin. Unset, no CORS headers are sent and browsers keep other
sites out.

An allowed origin is echoed back exactly, with ``Vary: Origin`` so caches keep
one answer per origin; ``*`` is answered with a literal ``*``. The API uses no
cookies or HTTP auth, so credentials are never allowed (and so never combined
with a wildcard). A preflight (``OPTIONS`` with ``Access-Control-Request-Method``)
from an allowed origin to an existing route is answered here with 204; from any
other origin it gets Flask's ordinary answer, without CORS headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request

from twin_server import config as settings

EXTENSION_KEY = "twin_cors"

ALLOW_METHODS = "GET, POST, DELETE"
ALLOW_HEADERS = "Content-Type, Accept, Authorization, X-API-Key, X-Request-ID"
#: Headers a cross-origin script may read: the request id, and how long to wait when busy.
EXPOSE_HEADERS = "X-Request-ID, Retry-After"
MAX_AGE = "600"

_ORIGIN = re.compile(r"https?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?")


def allowed_origins(config) -> frozenset[str]:
    """The origins of ``TWIN_CORS_ORIGINS``; ValueError names one that is not an origin."""
    origins = set()
    for origin in settings.get_list(config, "CORS_ORIGINS"):
        origin = origin.rstrip("/")
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"TWIN_CORS_ORIGINS: {origin!r} is not an origin "
                "(use scheme://host[:port] with no path, e.g. https://me.example.com, or *)"
            )
        origins.add(origin.lower())
    return frozenset(origins)


class Cors:
    def __init__(self, origins: frozenset[str]) -> None:
        self.origins = origins
        self.any_origin = "*" in origins

    def allow(self, origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for ``origin``, or None when it is not allowed."""
        if self.any_origin:
            return "*"
        if origin and origin.lower() in self.origins:
            return origin
        return None

    def preflight(self) -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        if request.routing_exception is not None or self.allow(request.headers.get("Origin")) is None:
            return None  # Flask answers as it would without CORS
        return Response(status=204)

    def add_headers(self, response: Response) -> Response:
        if not self.any_origin:
            response.vary.add("Origin")
        allowed = self.allow(request.headers.get("Origin"))
        if allowed is None:
            return response
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE
        return response


def check(config: Mapping[str, Any]) -> list[str]:
    """The problem with ``TWIN_CORS_ORIGINS``, for ``create_app``'s StartupError."""
    try:
        allowed_origins(config)
    except ValueError as exc:
        return [str(exc)]
    return []


def install(app: Flask) -> None:
    """Add CORS to ``app`` when ``TWIN_CORS_ORIGINS`` is set (after ``check`` found no problem)."""
    origins = allowed_origins(app.config)
    if not origins:
        return
    cors = app.extensions[EXTENSION_KEY] = Cors(origins)
    app.before_request(cors.preflight)
    app.after_request(cors.add_headers)
