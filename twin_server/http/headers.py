"""Security headers on every response.

Only headers the response does not already have are added, so a route's own
choice wins (the page at ``/`` sets its Content-Security-Policy with
``frame-ancestors`` from ``TWIN_FRAME_ANCESTORS``, and its Referrer-Policy):

- ``X-Content-Type-Options: nosniff``
- ``Referrer-Policy: no-referrer``
- ``X-Frame-Options: DENY`` — unless the response has a CSP with ``frame-ancestors``,
  which then decides who may frame it (browsers ignore X-Frame-Options next to it,
  and an old one obeying DENY would break an embedding the CSP allows)
- ``Strict-Transport-Security: max-age=31536000; includeSubDomains`` when ``TWIN_HSTS`` is on
  (only behind HTTPS: a browser remembers it for a year)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response

from twin_server import config as settings
from twin_server.errors import ConfigurationError

HSTS = "max-age=31536000; includeSubDomains"


def check(config: Mapping[str, Any]) -> list[str]:
    try:
        settings.get_bool(config, "HSTS", False)
    except ConfigurationError as exc:
        return [str(exc)]
    return []


def install(app: Flask) -> None:
    fixed = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]
    if settings.get_bool(app.config, "HSTS", False):
        fixed.append(("Strict-Transport-Security", HSTS))

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        present: dict[str, str] = {}  # lower-cased name: its first value, as ``headers.get`` reads it
        for name, value in headers:
            present.setdefault(name.lower(), value)
        for name, value in fixed:
            if name.lower() not in present:
                headers.add(name, value)
        if "x-frame-options" not in present and "frame-ancestors" not in present.get("content-security-policy", ""):
            headers.add("X-Frame-Options", "DENY")
        return response
