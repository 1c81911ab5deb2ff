"""Abuse and cost controls: per-client rate limits, per-session caps, a daily LLM budget.

Settings (all checked at startup; every cap is unlimited unless set):

``TWIN_RATE_LIMIT``           Flask-Limiter's syntax, ``;``-separated (default ``30/minute;500/day``;
                              ``off`` disables). One allowance per client IP, shared by every
                              chat endpoint (``POST`` to ``CHAT_PATHS``); other routes are free.
``TWIN_RATE_LIMIT_STORAGE``   where all the counters live (default ``memory://``: one process).
                              ``shm:////path/file`` (a memory-mapped table, ``limits_shm``; what
                              ``gunicorn.conf.py`` defaults to, in its run directory) or
                              ``sqlite:////path/file`` share them between the workers of one
                              machine, ``redis://host:6379`` between machines.
``TWIN_TRUSTED_PROXIES``      how many reverse proxies sit in front: ``X-Forwarded-For``/``-Proto``/
                              ``-Host`` are believed that many hops deep (Werkzeug's ProxyFix).
                              Default 0: the peer address is the client.
``TWIN_SESSION_MAX_MESSAGES`` messages a visitor may send in one session (429 after).
``TWIN_SESSION_MAX_CHARS``    characters a visitor may send in one session, all messages together (429).
``TWIN_DAILY_LLM_BUDGET``     LLM calls (chat turns) per UTC day for the whole server (503 after,
                              Retry-After until midnight UTC). Counted in calls, not tokens: a call
                              can be refused *before* it is made; tokens are known only after.
``TWIN_SESSION_TTL``          seconds a session lives (also how long its cap counters are kept;
                              30 days when unset).

The limits run on the ``limits`` library (Flask-Limiter's engine: its syntax,
its storages, fixed windows) from one ``before_request`` hook; Flask-Limiter
itself spent more time per request resolving its limits than a whole
zero-latency chat turn. A refusal raises ``LimitExceeded``, answered
by the central error handler like every other. The caps and the budget keep
their counters in the same storage, so everything holds across gunicorn
workers (shm, sqlite) and machines (Redis). If that storage stops answering, chats
are refused (503) rather than served unmetered.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import limits as limits_lib
from flask import Flask, request
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from werkzeug.middleware.proxy_fix import ProxyFix

from twin_server import limits_shm, limits_sqlite  # noqa: F401  (register the shm:// and sqlite:// storage schemes)
from twin_server import settings
from twin_server.errors import BackendUnavailable, ConfigurationError, LimitExceeded
from twin_server.state import EXTENSION_KEY

__all__ = ["BudgetExhausted", "CHAT_PATHS", "RateLimit", "SessionAllowance", "check", "install", "ping"]

DEFAULTS: dict[str, Any] = {"RATE_LIMIT": "30/minute;500/day", "RATE_LIMIT_STORAGE": "memory://"}
#: The routes that spend LLM money; limited by path so routes added by other modules are covered.
CHAT_PATHS = frozenset({"/chat", "/chat/stream", "/v1/chat/completions"})
DEFAULT_COUNTER_TTL = 30 * 24 * 3600
OFF = {"off", "none", "false", "no", ""}
#: ``app.extensions`` key of the counter storage, when the limits use one.
STORAGE_KEY = "twin_server.limits"


class BudgetExhausted(LimitExceeded):
    """The server's daily LLM budget is spent (503, Retry-After: until midnight UTC)."""


def _get(config: Mapping[str, Any], key: str) -> Any:
    return config.get(key, DEFAULTS.get(key))


def _optional_int(config: Mapping[str, Any], key: str) -> int | None:
    value = _get(config, key)
    if value is None or str(value).strip().lower() in OFF:
        return None
    return settings.get_int(config, key, minimum=1)


def _rate_limits(config: Mapping[str, Any]) -> list[limits_lib.RateLimitItem]:
    value = str(_get(config, "RATE_LIMIT")).strip()
    if value.lower() in OFF:
        return []
    try:
        return sorted(limits_lib.parse_many(value), key=lambda item: item.get_expiry())
    except ValueError:
        raise ConfigurationError(f"TWIN_RATE_LIMIT must be like '30/minute;500/day' (or 'off'), not {value!r}") from None


def _storage(config: Mapping[str, Any]) -> Storage:
    uri = str(_get(config, "RATE_LIMIT_STORAGE"))
    try:
        return storage_from_string(uri, wrap_exceptions=True)
    except (limits_lib.errors.ConfigurationError, ValueError, OSError) as exc:
        hint = " (install twin-server[redis])" if "prerequisite" in str(exc) and uri.startswith(("redis", "valkey")) else ""
        raise ConfigurationError(f"TWIN_RATE_LIMIT_STORAGE {uri!r} cannot be used: {exc}{hint}") from None


def check(config: Mapping[str, Any]) -> list[str]:
    """Every problem in the limit settings, for ``create_app``'s StartupError."""
    readers: list[Callable[[], object]] = [
        lambda: _rate_limits(config),
        lambda: _storage(config),
        lambda: settings.get_int(config, "TRUSTED_PROXIES", 0, minimum=0),
        *(lambda key=key: _optional_int(config, key)
          for key in ("SESSION_MAX_MESSAGES", "SESSION_MAX_CHARS", "DAILY_LLM_BUDGET", "SESSION_TTL")),
    ]
    problems = []
    for read in readers:
        try:
            read()
        except ConfigurationError as exc:
            problems.append(str(exc))
    return problems


def _unreachable() -> BackendUnavailable:
    return BackendUnavailable("the rate-limit storage did not answer")


class RateLimit:
    """Fixed-window allowances per client address on the chat endpoints.

    Every window of a chat is counted at once (under one lock on the shm
    storage, in one statement on the SQLite one: both have ``incr_many``); the chat is refused when any count
    passes its window's amount, as the ``limits`` fixed-window strategy does.
    """

    def __init__(self, items: Sequence[limits_lib.RateLimitItem], storage: Storage) -> None:
        self.items = list(items)
        self.storage = storage
        self.expiries = [item.get_expiry() for item in self.items]

    def _count(self, keys: list[str]) -> list[int]:
        incr_many = getattr(self.storage, "incr_many", None)
        if incr_many is not None:
            return incr_many(list(zip(keys, self.expiries)))
        return [self.storage.incr(key, expiry) for key, expiry in zip(keys, self.expiries)]

    def check(self) -> None:
        """The ``before_request`` hook: count a chat, or refuse it with its Retry-After."""
        current = request._get_current_object()  # one context lookup, not three
        if current.method != "POST" or current.path not in CHAT_PATHS:
            return
        client = current.remote_addr or "unknown"
        keys = [item.key_for("chat", client) for item in self.items]
        try:
            counts = self._count(keys)
            for item, key, count in zip(self.items, keys, counts):
                if count > item.amount:
                    retry_after = max(1.0, self.storage.get_expiry(key) - time.time())
                    raise LimitExceeded(
                        f"Too many messages ({item}); try again in {math.ceil(retry_after)} s.", retry_after=retry_after
                    )
        except StorageError as exc:
            raise _unreachable() from exc


class SessionAllowance:
    """The ``ChatService`` guard: per-session caps, then the daily budget, before the LLM call.

    Reads first and counts only a turn that passes every check, so a refused
    message costs the visitor nothing. Concurrent turns of one session may
    overshoot a cap by the turns in flight; the budget is one atomic increment.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        max_messages: int | None = None,
        max_chars: int | None = None,
        daily_budget: int | None = None,
        session_ttl: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage, self.clock = storage, clock
        self.max_messages, self.max_chars, self.daily_budget = max_messages, max_chars, daily_budget
        self.ttl = session_ttl or DEFAULT_COUNTER_TTL

    def __call__(self, session_id: str, text: str) -> None:
        try:
            self._check_and_count(session_id, text)
        except StorageError as exc:
            raise _unreachable() from exc

    def _check_and_count(self, session_id: str, text: str) -> None:
        messages_key, chars_key = f"twin/session/{session_id}/messages", f"twin/session/{session_id}/chars"
        if self.max_messages is not None and self.storage.get(messages_key) >= self.max_messages:
            raise LimitExceeded(f"This conversation has reached its limit of {self.max_messages} messages; start a new one.")
        if self.max_chars is not None and self.storage.get(chars_key) + len(text) > self.max_chars:
            raise LimitExceeded(f"This conversation has reached its limit of {self.max_chars} characters; start a new one.")
        if self.daily_budget is not None:
            self._spend_budget()
        if self.max_messages is not None:
            self.storage.incr(messages_key, self.ttl)
        if self.max_chars is not None and text:
            self.storage.incr(chars_key, self.ttl, amount=len(text))

    def _spend_budget(self) -> None:
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc)
        midnight = datetime.datetime.combine(now.date() + datetime.timedelta(days=1), datetime.time(), now.tzinfo)
        left = (midnight - now).total_seconds()
        used = self.storage.incr(f"twin/llm-budget/{now.date().isoformat()}", math.ceil(left) + 60)
        if used > self.daily_budget:
            exhausted = BudgetExhausted(f"the daily LLM budget of {self.daily_budget} calls is spent", retry_after=left)
            exhausted.operation = "llm"  # the problem then says the language model is unavailable
            raise exhausted


def ping(app: Flask) -> None:
    """For ``/ready``: BackendUnavailable when the counter storage does not answer (every chat would be a 503)."""
    storage = app.extensions.get(STORAGE_KEY)
    if storage is None:
        return
    try:
        healthy = storage.check()
    except Exception as exc:  # limits' own storages answer False; a third party's may raise
        raise _unreachable() from exc
    if not healthy:
        raise _unreachable()


def install(app: Flask) -> None:
    """Put the limits on ``app`` (after ``check`` found no problem)."""
    config, state = app.config, app.extensions[EXTENSION_KEY]
    proxies = settings.get_int(config, "TRUSTED_PROXIES", 0, minimum=0)
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    state.errors.register(BudgetExhausted, 503, "Daily budget spent")
    items = _rate_limits(config)
    caps = {
        "max_messages": _optional_int(config, "SESSION_MAX_MESSAGES"),
        "max_chars": _optional_int(config, "SESSION_MAX_CHARS"),
        "daily_budget": _optional_int(config, "DAILY_LLM_BUDGET"),
    }
    if not items and all(value is None for value in caps.values()):
        return
    storage = _storage(config)
    app.extensions[STORAGE_KEY] = storage
    if items:
        app.before_request(RateLimit(items, storage).check)
    if any(value is not None for value in caps.values()):
        allowance = SessionAllowance(storage, session_ttl=_optional_int(config, "SESSION_TTL"), **caps)
        state.chat.guards.append(allowance)
