"""What the app believes of the headers its reverse proxies add (Werkzeug's ProxyFix).

``TWIN_TRUSTED_PROXIES``       how many reverse proxies sit in front (default 0: the peer address
                               is the client, and no ``X-Forwarded-*`` header is believed). With
                               N, ``X-Forwarded-For`` (the client address the rate limit counts)
                               and ``X-Forwarded-Proto`` (the scheme of the URLs the app builds)
                               are read N hops deep.
``TWIN_TRUSTED_FORWARDED_HOST`` also believe ``X-Forwarded-Host`` N hops deep (default false).

The host is not believed by default because the proxies this app is deployed
behind pass ``X-Forwarded-Host`` through from the client unless told
otherwise, and the app builds absolute URLs from the host: a client could
then point a redirect (``/static//chat.js`` → 308) at any site it names, and
a cache in front would keep that answer for everyone. Set it to true only if
your proxy overwrites the header with the host it was asked for.
``X-Forwarded-Port`` and ``-Prefix`` are never believed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from twin_server import config as settings
from twin_server.errors import ConfigurationError

__all__ = ["check", "install"]


def _settings(config: Mapping[str, Any]) -> tuple[int, bool]:
    return (settings.get_int(config, "TRUSTED_PROXIES", 0, minimum=0),
            settings.get_bool(config, "TRUSTED_FORWARDED_HOST", False))


def check(config: Mapping[str, Any]) -> list[str]:
    """Every problem in the proxy settings, for ``create_app``'s StartupError."""
    problems = []
    for read in (lambda: settings.get_int(config, "TRUSTED_PROXIES", 0, minimum=0),
                 lambda: settings.get_bool(config, "TRUSTED_FORWARDED_HOST", False)):
        try:
            read()
        except ConfigurationError as exc:
            problems.append(str(exc))
    return problems


def install(app: Flask) -> None:
    """Wrap ``app``'s WSGI callable in ProxyFix when proxies are trusted (after ``check`` found no problem)."""
    proxies, forwarded_host = _settings(app.config)
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies if forwarded_host else 0)
