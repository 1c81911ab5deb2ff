"""The ``webhook`` notifier: a JSON POST per event to ``TWIN_NOTIFY_WEBHOOK_URL``.

The body is ``twin_server.describe(event)``: ``event`` (``lead`` |
``unanswered``), the event's fields, and ``text``, a one-line summary that a
Slack incoming webhook shows as it is (for Discord, add ``/slack`` to its
webhook URL). ``TWIN_NOTIFY_WEBHOOK_URL`` is an ``http(s)://`` URL, or
``secret:NAME`` to read it from the secret ``NAME`` (a Slack URL is a secret).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from twin_notify.http import post
from twin_server import describe
from twin_server.errors import ConfigurationError

SECRET_PREFIX = "secret:"


def _checked(url: str, where: str) -> str:
    url = url.strip()
    if not url.startswith(("http://", "https://")) or len(url) < 10:
        raise ConfigurationError(f"notifier 'webhook': {where} must be an http:// or https:// URL")
    return url


class WebhookNotifier:
    def __init__(self, url: Callable[[], str]) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "twin-server"

    @classmethod
    def from_context(cls, context: Any) -> "WebhookNotifier":
        raw = (context.settings.get_str("NOTIFY_WEBHOOK_URL") or "").strip()
        if not raw:
            raise ConfigurationError("notifier 'webhook' needs TWIN_NOTIFY_WEBHOOK_URL (an http(s) URL or secret:NAME)")
        if raw.startswith(SECRET_PREFIX):
            name = raw[len(SECRET_PREFIX):].strip()
            if not name:
                raise ConfigurationError("TWIN_NOTIFY_WEBHOOK_URL=secret:NAME needs the name of the secret")
            _checked(context.secret(name), f"the secret {name}")  # fail at startup, not at the first lead
            return cls(lambda: _checked(context.secret(name), f"the secret {name}"))
        url = _checked(raw, "TWIN_NOTIFY_WEBHOOK_URL")
        return cls(lambda: url)

    def __repr__(self) -> str:
        return "WebhookNotifier()"  # never the URL

    def notify(self, event: Any, timeout: float | None = None) -> None:
        post(self.session, "the webhook", self.url(), timeout, json=describe(event))
