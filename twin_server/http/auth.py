"""API keys: who may call the twin.

``TWIN_API_KEYS`` holds the keys, either literally as a comma-separated list,
or as ``secret:NAME``: the keys are then the comma-separated value of the
secret ``NAME`` read through the selected secrets provider (cached for
``KEY_CACHE_SECONDS``, so a rotated key is picked up without a restart).
Nothing else is read as a secret name: a value without the ``secret:`` prefix
is always the keys themselves.

With keys set, every ``/v1`` request needs one. With ``TWIN_PUBLIC_CHAT=false``
(default true), every request needs one except ``/health`` and ``/ready``,
and ``TWIN_API_KEYS`` must be set. ``/owner/...`` never takes an API key: it
takes an owner key (``TWIN_OWNER_KEYS``, see ``twin_server.owner``). A key is sent as ``Authorization: Bearer
<key>`` or ``X-API-Key: <key>``. Keys are compared in constant time against
every configured key, and never logged.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import Unauthorized

from twin_server import config as settings
from twin_server.errors import ConfigurationError
from twin_server.app_state import twin

EXTENSION_KEY = "twin_auth"
SECRET_PREFIX = "secret:"
KEY_CACHE_SECONDS = 300.0
#: Paths that never need a key (probes).
OPEN_PATHS = frozenset({"/health", "/ready"})
#: Paths that need a key whenever keys are set, even with a public chat.
KEYED_PREFIX = "/v1"
#: Paths guarded by the owner's keys instead (``TWIN_OWNER_KEYS``, ``twin_server.owner.routes``).
OWNER_PREFIX = "/owner"


def _digest(key: str) -> bytes:
    # Hashing first makes every comparison the same length, so not even a key's length leaks.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def split_keys(value: str) -> list[str]:
    return [key.strip() for key in value.split(",") if key.strip()]


class KeyRing:
    """The configured keys: literal, or the value of a secret re-read every ``ttl`` seconds."""

    def __init__(
        self,
        literal: list[str],
        secret_name: str | None = None,
        *,
        ttl: float = KEY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        setting: str = "TWIN_API_KEYS",
    ) -> None:
        self.secret_name, self.setting = secret_name, setting
        self.ttl, self.clock = ttl, clock
        self._digests = [_digest(k) for k in literal]
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._digests) or self.secret_name is not None

    def digests(self, read_secret: Callable[[str], str]) -> list[bytes]:
        if self.secret_name is None:
            return self._digests
        with self._lock:
            now = self.clock()
            if self._loaded_at is None or now - self._loaded_at >= self.ttl:
                keys = split_keys(read_secret(self.secret_name))
                if not keys:
                    raise ConfigurationError(f"secret {self.secret_name} ({self.setting}) holds no key")
                self._digests, self._loaded_at = [_digest(k) for k in keys], now
            return self._digests

    def matches(self, given: str, read_secret: Callable[[str], str]) -> bool:
        """True when ``given`` is one of the keys; every key is compared, in constant time."""
        given_digest = _digest(given)
        found = False
        for digest in self.digests(read_secret):
            found |= hmac.compare_digest(given_digest, digest)
        return found


@dataclasses.dataclass(frozen=True)
class AccessPolicy:
    keys: KeyRing
    public_chat: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "AccessPolicy":
        """ConfigurationError for a blank secret name, or a private chat without keys."""
        raw = config.get("API_KEYS")
        text = raw.strip() if isinstance(raw, str) else ""
        if text.startswith(SECRET_PREFIX):
            name = text[len(SECRET_PREFIX):].strip()
            if not name:
                raise ConfigurationError("TWIN_API_KEYS=secret:NAME needs the name of the secret that holds the keys")
            keys = KeyRing([], name)
        else:
            keys = KeyRing(settings.get_list(config, "API_KEYS"))
        public = settings.get_bool(config, "PUBLIC_CHAT", True)
        if not public and not keys.configured:
            raise ConfigurationError(
                "TWIN_PUBLIC_CHAT=false needs API keys: set TWIN_API_KEYS to a comma-separated list "
                "or to secret:NAME"
            )
        return cls(keys, public)

    def requires_key(self, path: str) -> bool:
        if path in OPEN_PATHS or path == OWNER_PREFIX or path.startswith(OWNER_PREFIX + "/"):
            return False
        if not self.public_chat:
            return True
        return self.keys.configured and (path == KEYED_PREFIX or path.startswith(KEYED_PREFIX + "/"))


def presented_key() -> str | None:
    """The key of the request: ``Authorization: Bearer <key>``, else ``X-API-Key``."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def check_key(policy: AccessPolicy) -> None:
    """The ``before_request`` hook (with the app's policy): raise 401 when this request needs a key and has no valid one."""
    if not policy.requires_key(request.path):
        return
    given = presented_key()
    if given is None:
        raise Unauthorized("An API key is required: send it as 'Authorization: Bearer <key>'.")
    if not policy.keys.matches(given, twin().backends.secrets.get):
        raise Unauthorized("The API key is not valid.")


def add_challenge(response: Response) -> Response:
    if response.status_code == 401:
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="twin-server"')
    return response


def check(config: Mapping[str, Any]) -> list[str]:
    """The problem with the key settings, for ``create_app``'s StartupError."""
    try:
        AccessPolicy.from_config(config)
    except ConfigurationError as exc:
        return [str(exc)]
    return []


def install(app: Flask) -> None:
    """Check keys on ``app``'s requests as configured (after ``check`` found no problem)."""
    policy = app.extensions[EXTENSION_KEY] = AccessPolicy.from_config(app.config)
    app.before_request(functools.partial(check_key, policy))  # the policy is per app: not looked up per request
    app.after_request(add_challenge)
