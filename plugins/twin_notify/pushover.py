"""The ``pushover`` notifier: a push notification per event through Pushover's message API.

``TWIN_PUSHOVER_USER`` is the user (or group) key; the application token is
the secret ``PUSHOVER_TOKEN``. ``TWIN_PUSHOVER_API_URL`` changes the API's
address (for a relay, or a test server).
"""

from __future__ import annotations

from typing import Any

import requests

from twin_notify.http import post
from twin_server import describe
from twin_server.errors import ConfigurationError

API_URL = "https://api.pushover.net/1/messages.json"
TOKEN_SECRET = "PUSHOVER_TOKEN"
MESSAGE_MAX, TITLE_MAX = 1024, 250
TITLES = {"lead": "New lead from your twin", "unanswered": "A question your twin could not answer"}


class PushoverNotifier:
    def __init__(self, user: str, token: Any, api_url: str = API_URL) -> None:
        self.user, self.token, self.api_url = user, token, api_url
        self.session = requests.Session()

    @classmethod
    def from_context(cls, context: Any) -> "PushoverNotifier":
        settings = context.settings
        user = (settings.get_str("PUSHOVER_USER") or "").strip()
        if not user:
            raise ConfigurationError("notifier 'pushover' needs TWIN_PUSHOVER_USER (your Pushover user key)")
        url = (settings.get_str("PUSHOVER_API_URL") or API_URL).strip()
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"TWIN_PUSHOVER_API_URL must be an http:// or https:// URL, not {url!r}")
        context.secret(TOKEN_SECRET)  # fail at startup, not at the first lead
        return cls(user, lambda: context.secret(TOKEN_SECRET), url)

    def __repr__(self) -> str:
        return "PushoverNotifier()"

    def notify(self, event: Any, timeout: float | None = None) -> None:
        described = describe(event)
        form = {
            "token": self.token(),
            "user": self.user,
            "title": TITLES[described["event"]][:TITLE_MAX],
            "message": described["text"][:MESSAGE_MAX],
        }
        post(self.session, "Pushover", self.api_url, timeout, data=form)
