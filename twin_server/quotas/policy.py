"""Abuse and cost controls: per-client rate limits, per-session caps, a daily LLM budget.

Settings (all checked at startup; every cap is unlimited unless set):

``TWIN_RATE_LIMIT``           Flask-Limiter's syntax, ``;``-separated (default ``30/minute;500/day``;
                              ``off`` disables). One allowance per client, shared by every
                              chat endpoint (``POST`` to ``CHAT_PATHS``) and every read of a
                              conversation (``GET`` under ``READ_PREFIXES``); other routes are free.
                              A client is its IPv4 address, or its IPv6 address's network:
``TWIN_RATE_LIMIT_IPV6_PREFIX`` its prefix length (default 64: one visitor's home or server
                              usually has a whole /64, 2**64 addresses to rotate through).
``TWIN_RATE_LIMIT_STORAGE``   where all the counters live (default ``memory://``: one process;
                              under gunicorn a table its workers share, see ``limits_storage``).
                              ``shm:////path/file`` (a memory-mapped table, ``limits_shm``; what
                              ``gunicorn.conf.py`` defaults to, in its run directory) or
                              ``sqlite:////path/file`` share them between the workers of one
                              machine, ``redis://host:6379`` between machines.
``TWIN_SESSION_MAX_MESSAGES`` messages a visitor may send in one session (default 500; 429 after,
                              "start a new conversation"; ``off`` for no cap).
``TWIN_SESSION_MAX_CHARS``    characters a visitor may make the LLM read in one session, all turns
                              together (429): each turn's message, and a ``/v1`` client's
                              instructions and the history it sends (``visitor_chars``).
``TWIN_DAILY_LLM_BUDGET``     LLM calls (chat turns) per UTC day for the whole server (503 after,
                              Retry-After until midnight UTC). Counted in calls, not tokens: a call
                              can be refused *before* it is made; tokens are known only after. A
                              call costs one unit per ``TWIN_MAX_MESSAGE_CHARS`` characters the
                              visitor makes the LLM read (so a ``/chat`` turn is always one unit; a
                              ``/v1`` call carrying its own long history costs what it weighs).
``TWIN_SESSION_TTL``          seconds a session lives (also how long its cap counters are kept;
                              30 days when unset).

The client address is the peer's, or what ``X-Forwarded-For`` says behind
``TWIN_TRUSTED_PROXIES`` proxies (``proxy``). Session ids, which visitors
choose, never become counter keys as they are: each is hashed with the
storage's secret (the shm table's; none elsewhere), so its counters cannot be
aimed at a chosen place of the table.

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
import functools
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import limits as limits_lib
from flask import Flask, request
from limits.errors import StorageError
from limits.storage import Storage

from twin_server.quotas import storage as limits_storage
from twin_server import config as settings
from twin_server.errors import BackendUnavailable, ConfigurationError, LimitExceeded
from twin_server.app_state import EXTENSION_KEY
from twin_server.turn.turn import TurnRequest

__all__ = [
    "BudgetExhausted", "CHAT_PATHS", "READ_PREFIXES", "RateLimit", "SessionAllowance", "check", "client_key", "counted",
    "install", "ping", "visitor_chars",
]

log = logging.getLogger("twin_server.limits")

DEFAULTS: dict[str, Any] = {
    "RATE_LIMIT": "30/minute;500/day", "RATE_LIMIT_IPV6_PREFIX": 64, "SESSION_MAX_MESSAGES": 500,
}
#: What the client's allowance counts, by path so routes added by other modules are covered: a POST to a
#: route that spends LLM money, and a GET (or HEAD) of anything under a prefix that reads a stored conversation.
CHAT_PATHS = frozenset({"/chat", "/chat/stream", "/v1/chat/completions"})
READ_PREFIXES = ("/conversation/",)
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
    return settings.get_int(config, key, DEFAULTS.get(key), minimum=1)


def _rate_limits(config: Mapping[str, Any]) -> list[limits_lib.RateLimitItem]:
    value = str(_get(config, "RATE_LIMIT")).strip()
    if value.lower() in OFF:
        return []
    try:
        return sorted(limits_lib.parse_many(value), key=lambda item: item.get_expiry())
    except ValueError:
        raise ConfigurationError(f"TWIN_RATE_LIMIT must be like '30/minute;500/day' (or 'off'), not {value!r}") from None


def _ipv6_prefix(config: Mapping[str, Any]) -> int:
    prefix = settings.get_int(config, "RATE_LIMIT_IPV6_PREFIX", DEFAULTS["RATE_LIMIT_IPV6_PREFIX"], minimum=1)
    if prefix > 128:
        raise ConfigurationError(f"TWIN_RATE_LIMIT_IPV6_PREFIX must be a prefix length of 1 to 128, not {prefix}")
    return prefix


def _caps(config: Mapping[str, Any]) -> dict[str, int | None]:
    return {
        "max_messages": _optional_int(config, "SESSION_MAX_MESSAGES"),
        "max_chars": _optional_int(config, "SESSION_MAX_CHARS"),
        "daily_budget": _optional_int(config, "DAILY_LLM_BUDGET"),
    }


def _counters_needed(config: Mapping[str, Any]) -> bool:
    try:
        return bool(_rate_limits(config)) or any(value is not None for value in _caps(config).values())
    except ConfigurationError:
        return True  # reported by its own reader


def check(config: Mapping[str, Any]) -> list[str]:
    """Every problem in the limit settings, for ``create_app``'s StartupError."""
    readers: list[Callable[[], object]] = [
        lambda: _rate_limits(config),
        lambda: _ipv6_prefix(config),
        lambda: limits_storage.open_storage(config, counters_needed=_counters_needed(config)),
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


def counted(method: str, path: str) -> bool:
    """Whether a request counts against its client's allowance."""
    if method == "POST":
        return path in CHAT_PATHS
    if method in ("GET", "HEAD"):
        return path.startswith(READ_PREFIXES)
    return False


def visitor_chars(request: TurnRequest) -> int:
    """The characters a turn's caller makes the LLM read: its message, its instructions, the history it sent."""
    history = request.history or ()
    return len(request.text) + len(request.instructions) + sum(len(message.content) for message in history)


#: Clients' window keys, and sessions' counter keys, kept worked out (each table emptied when it is full).
KEYS_KEPT = 4096


def _unreachable() -> BackendUnavailable:
    return BackendUnavailable("the rate-limit storage did not answer")


def client_key(address: str | None, ipv6_prefix: int = 64) -> str:
    """Whom a request's address counts for: an IPv4 address, an IPv6 network, or ``unknown``."""
    if not address or len(address) > 64:  # no socket address (a Unix socket), or too long to be one
        return "unknown"
    return _client_key(address, ipv6_prefix)


@functools.lru_cache(maxsize=4096)
def _client_key(address: str, ipv6_prefix: int) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"  # a proxy's garbage: one allowance for all of it
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:  # an IPv4 client of a dual-stack socket
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip.packed, ipv6_prefix), strict=False))


class RateLimit:
    """Fixed-window allowances per client (``client_key``) on the chat endpoints and conversation reads.

    Every window of a chat is counted at once (under one lock on the shm
    storage, in one statement on the SQLite one: both have ``incr_many``); the chat is refused when any count
    passes its window's amount, as the ``limits`` fixed-window strategy does.
    """

    def __init__(self, items: Sequence[limits_lib.RateLimitItem], storage: Storage, ipv6_prefix: int = 64) -> None:
        self.items = list(items)
        self.storage = storage
        self.ipv6_prefix = ipv6_prefix
        self.expiries = [item.get_expiry() for item in self.items]
        self._windows: dict[str, list[tuple[str, float]]] = {}

    def windows(self, client: str) -> list[tuple[str, float]]:
        """Each window's ``(key, expiry)`` for ``client``, worked out once per client (a bounded table)."""
        windows = self._windows.get(client)
        if windows is None:
            if len(self._windows) >= KEYS_KEPT:
                self._windows.clear()
            windows = self._windows[client] = [
                (item.key_for("chat", client), expiry) for item, expiry in zip(self.items, self.expiries)]
        return windows

    def _count(self, windows: list[tuple[str, float]]) -> list[int]:
        incr_many = getattr(self.storage, "incr_many", None)
        if incr_many is not None:
            return incr_many(windows)
        return [self.storage.incr(key, expiry) for key, expiry in windows]

    def check(self) -> None:
        """The ``before_request`` hook: count a chat, or refuse it with its Retry-After."""
        current = request._get_current_object()  # one context lookup, not three
        if not counted(current.method, current.path):
            return
        windows = self.windows(client_key(current.remote_addr, self.ipv6_prefix))
        try:
            counts = self._count(windows)
            for item, (key, _), count in zip(self.items, windows, counts):
                if count > item.amount:
                    retry_after = max(1.0, self.storage.get_expiry(key) - time.time())
                    raise LimitExceeded(
                        f"Too many requests ({item}); try again in {math.ceil(retry_after)} s.", retry_after=retry_after
                    )
        except StorageError as exc:
            raise _unreachable() from exc


class SessionAllowance:
    """The turn's guard: per-session caps, then the daily budget, before the LLM call.

    Counts everything the visitor makes the LLM read (``visitor_chars``), not
    only the last message. Reads first and counts only a turn that passes every
    check, so a refused message costs the visitor nothing (with the message cap
    alone, one count: a refused turn's lands above the cap, which refuses it
    anyway). Concurrent turns of one session may overshoot a cap by the turns in flight; the budget is one
    atomic increment. A turn that is not stored (a stateless ``/v1`` call, a
    session of its own) is checked alone against the caps and leaves no session
    counters behind: nobody could ever read them again.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        max_messages: int | None = None,
        max_chars: int | None = None,
        daily_budget: int | None = None,
        session_ttl: int | None = None,
        budget_unit_chars: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage, self.clock = storage, clock
        self.max_messages, self.max_chars, self.daily_budget = max_messages, max_chars, daily_budget
        #: The message cap alone (the default): a stored turn is one count (``_check_and_count``).
        self._cap_only = max_messages is not None and max_chars is None and daily_budget is None
        self.ttl = session_ttl or DEFAULT_COUNTER_TTL
        #: Characters one budget unit pays for (``TWIN_MAX_MESSAGE_CHARS``); None: every call is one unit.
        self.budget_unit_chars = budget_unit_chars
        self.secret: bytes = getattr(storage, "secret", b"")  # the shm table's; other storages have no slots to aim at
        self._today: tuple[str, float, float] | None = None  # (budget key, day's end, day's start)
        self._session_keys: dict[str, str] = {}  # session id: its counters' key, worked out once (bounded)

    def _session_key(self, session_id: str) -> str:
        key = self._session_keys.get(session_id)
        if key is None:
            if len(self._session_keys) >= KEYS_KEPT:
                self._session_keys.clear()
            digest = hashlib.blake2b(session_id.encode(), digest_size=16, key=self.secret,
                                     person=b"twin-session").hexdigest()
            key = self._session_keys[session_id] = f"twin/session/{digest}"
        return key

    def __call__(self, turn: TurnRequest) -> None:
        try:
            self._check_and_count(turn)
        except StorageError as exc:
            raise _unreachable() from exc

    def budget_units(self, chars: int) -> int:
        if not self.budget_unit_chars:
            return 1
        return max(1, math.ceil(chars / self.budget_unit_chars))

    def _check_and_count(self, turn: TurnRequest) -> None:
        chars = visitor_chars(turn)
        session = self._session_key(turn.session_id)
        messages_key, chars_key = f"{session}/messages", f"{session}/chars"
        stored = turn.store
        if stored and self._cap_only:
            # One count, refused past the cap. A refused turn's count
            # only ever lands above the cap, where it refuses what the cap refused anyway.
            if self.storage.incr(messages_key, self.ttl) > self.max_messages:
                raise self._at_message_cap()
            return
        if self.max_messages is not None and stored and self.storage.get(messages_key) >= self.max_messages:
            raise self._at_message_cap()
        if self.max_chars is not None and (self.storage.get(chars_key) if stored else 0) + chars > self.max_chars:
            raise LimitExceeded(
                f"This conversation has reached its limit of {self.max_chars} characters; start a new conversation."
            )
        if self.daily_budget is not None:
            self._spend_budget(self.budget_units(chars))
        if not stored:
            return
        if self.max_messages is not None:
            self.storage.incr(messages_key, self.ttl)
        if self.max_chars is not None:
            self.storage.incr(chars_key, self.ttl, amount=chars)

    def _at_message_cap(self) -> LimitExceeded:
        return LimitExceeded(
            f"This conversation has reached its limit of {self.max_messages} messages; start a new conversation."
        )

    def _spend_budget(self, units: int) -> None:
        now = self.clock()
        key, midnight = self._day(now)
        left = midnight - now
        # A call of several units that does not fit is refused uncounted: it must not spend what smaller calls could.
        if units > 1 and self.storage.get(key) + units > self.daily_budget:
            raise self._exhausted(left)
        if self.storage.incr(key, math.ceil(left) + 60, amount=units) > self.daily_budget:
            raise self._exhausted(left)

    def _day(self, now: float) -> tuple[str, float]:
        """The UTC day's budget key and its end (as a timestamp), worked out once a day."""
        day = self._today
        if day is None or not day[2] <= now < day[1]:
            start = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(hour=0, minute=0, second=0,
                                                                                        microsecond=0)
            end = start + datetime.timedelta(days=1)
            day = self._today = (f"twin/llm-budget/{start.date().isoformat()}", end.timestamp(), start.timestamp())
        return day[0], day[1]

    def _exhausted(self, left: float) -> BudgetExhausted:
        exhausted = BudgetExhausted(f"the daily LLM budget of {self.daily_budget} calls is spent", retry_after=left)
        exhausted.operation = "llm"  # the problem then says the language model is unavailable
        return exhausted


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
    state.errors.register(BudgetExhausted, 503, "Daily budget spent")
    items, caps = _rate_limits(config), _caps(config)
    if not items and all(value is None for value in caps.values()):
        return
    storage, warning = limits_storage.open_storage(config)
    if warning:
        log.warning(warning)
    app.extensions[STORAGE_KEY] = storage
    state.readiness_probes.append(lambda: ping(app))  # with the counter storage down every chat is refused
    if items:
        app.before_request(RateLimit(items, storage, _ipv6_prefix(config)).check)
    if any(value is not None for value in caps.values()):
        allowance = SessionAllowance(
            storage, session_ttl=_optional_int(config, "SESSION_TTL"), budget_unit_chars=state.max_message_chars, **caps
        )
        state.turns.guards.append(allowance)
