"""Secret values that no log line may show, and the redaction of every line the root handler writes.

Whoever comes to hold a secret registers its value: the secrets wrapper every
value a provider returns, ``register_config`` the values of settings that look
secret (names ending in ``KEY``, ``KEYS``, ``SECRET``, ``TOKEN``, ``PASSWORD``) and the password of
any ``scheme://user:password@host`` URL in the config. ``configure_logging``'s
handler then replaces each value, wherever it appears in a formatted line
(message, arguments, extra fields, traceback, a third-party logger's text),
with ``[redacted]``. Matching is by value, so it does not matter which logger
or which library wrote it.

Each value is also registered as JSON would escape it and, for URL parts, as
percent-encoded; values shorter than ``MIN_LENGTH`` (8) are ignored: they would
blank out ordinary words (a secret "twin" would take every logger's name) and
are no secret worth the name.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["REDACTED", "SecretRegistry", "register_config", "register_secret", "secrets"]

REDACTED = "[redacted]"
MIN_LENGTH = 8
#: Setting names whose value is a secret: ``API_KEYS``, ``OPENAI_API_KEY``, ``..._SECRET``, ``..._PASSWORD``
#: (not ``MAX_TOKENS`` or ``SECRETS``, the provider's name).
_SECRET_NAME = re.compile(r"(?:^|_)(?:KEY|KEYS|SECRET|TOKEN|PASSWORD|PASSWD)$", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]*@")


class SecretRegistry:
    """The values to redact; registering is thread-safe and reading needs no lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()  # longest first, so a secret containing another goes whole

    def register(self, value: Any) -> None:
        """Redact ``value`` from now on (a comma-separated value: each part too)."""
        if not isinstance(value, str):
            return
        forms = {value, *(part.strip() for part in value.split(","))}
        forms |= {json.dumps(form, ensure_ascii=False)[1:-1] for form in forms}
        forms |= {json.dumps(form)[1:-1] for form in forms}
        forms = {form for form in forms if len(form) >= MIN_LENGTH}
        with self._lock:
            if forms <= set(self._values):
                return
            self._values = tuple(sorted(set(self._values) | forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def clear(self) -> None:
        with self._lock:
            self._values = ()


#: The process's registry: logging is process-wide, and so is what it must not print.
secrets = SecretRegistry()


def register_secret(value: Any) -> None:
    secrets.register(value)


def url_credentials(value: str) -> list[str]:
    """The password (and ``user:password``) of each URL with credentials in ``value``, as written and decoded."""
    found = []
    for match in _URL.finditer(value):
        userinfo = match.group(0).split("://", 1)[1][:-1]
        user, colon, password = userinfo.rpartition(":") if ":" in userinfo else ("", "", userinfo)
        for text in (password, userinfo) if colon else (userinfo,):
            found += [text, urllib.parse.unquote(text)]
    return found


def register_config(config: Mapping[str, Any], registry: SecretRegistry = secrets) -> None:
    """Register the secret-looking settings and every URL credential in ``config``."""
    for key, value in config.items():
        secret_name = _SECRET_NAME.search(str(key))
        for text in _strings(value):
            if secret_name and not text.startswith("secret:"):
                registry.register(text)
            for credential in url_credentials(text):
                registry.register(credential)


def _strings(value: Any) -> Iterator[str]:
    """The strings in a setting: itself, or those inside it (``TWIN_API_KEYS='["k1", "k2"]'`` arrives as a list)."""
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
