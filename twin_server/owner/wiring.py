"""How an app gets its owner side: the settings, their startup check, the event store, the turn's hooks.

Settings (all checked at startup with the others):

``TWIN_OWNER_EVENTS``       ``true`` (default): record leads and unanswered questions; ``false``: record nothing.
``TWIN_OWNER_KEYS``         the owner's keys for ``/owner/...``: a comma-separated list, or ``secret:NAME``
                            (as ``TWIN_API_KEYS``). Unset: the owner endpoints do not exist (404).
``TWIN_OWNER_RATE_LIMIT``   requests per client address to ``/owner/...`` (default ``60/minute``, the syntax
                            of ``TWIN_RATE_LIMIT``; counted in ``TWIN_RATE_LIMIT_STORAGE``).
``TWIN_NOTIFY_QUEUE_SIZE``  events waiting for delivery at most (default 100); more stay pending for
                            ``twin-server inbox --retry``.

Where events live: the conversation store's ``event_store()`` when it has
one (the filesystem store: ``TWIN_DATA_DIR/owner-events``; S3: under
``TWIN_S3_PREFIX``), else this machine's ``TWIN_DATA_DIR/owner-events``
(a WARNING at startup says so).

With a store on this machine's disk and only notifiers that say ``local =
True`` (``log``), a request's events are stored and delivered by the request's
own thread once its response is sent, not by the delivery worker
(``delivery``); a notifier that calls another machine keeps them on the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import limits as limits_lib
from flask import Flask, Response, g, has_request_context

from twin_server import config as settings
from twin_server.app_state import EXTENSION_KEY
from twin_server.backends.events import DocumentEventStore, FileDocuments, RetryingEvents
from twin_server.backends.protocols import EventStore, protocol_methods
from twin_server.errors import ConfigurationError
from twin_server.http.auth import KeyRing, SECRET_PREFIX
from twin_server.owner.delivery import Batch, Delivery
from twin_server.owner.recorder import OwnerEvents
from twin_server.owner.toolbox import OwnerTools

__all__ = ["DEFAULT_EVENTS_DIR", "build", "check", "install", "owner_keys"]

log = logging.getLogger("twin_server.owner")

DEFAULT_EVENTS_DIR = "owner-events"
DEFAULTS: dict[str, Any] = {"OWNER_RATE_LIMIT": "60/minute", "NOTIFY_QUEUE_SIZE": 100, "OWNER_EVENTS": True}


def _get(config: Mapping[str, Any], key: str) -> Any:
    return config.get(key, DEFAULTS[key])


def owner_keys(config: Mapping[str, Any]) -> KeyRing:
    """The owner's keys; ConfigurationError for ``secret:`` without a name."""
    raw = config.get("OWNER_KEYS")
    text = raw.strip() if isinstance(raw, str) else ""
    if text.startswith(SECRET_PREFIX):
        name = text[len(SECRET_PREFIX):].strip()
        if not name:
            raise ConfigurationError("TWIN_OWNER_KEYS=secret:NAME needs the name of the secret that holds the keys")
        return KeyRing([], name, setting="TWIN_OWNER_KEYS")
    return KeyRing(settings.get_list(config, "OWNER_KEYS"), setting="TWIN_OWNER_KEYS")


def rate_limits(config: Mapping[str, Any]) -> list[limits_lib.RateLimitItem]:
    value = str(_get(config, "OWNER_RATE_LIMIT")).strip()
    if value.lower() in ("off", "none", "false", "no", ""):
        return []
    try:
        return list(limits_lib.parse_many(value))
    except ValueError:
        raise ConfigurationError(f"TWIN_OWNER_RATE_LIMIT must be like '60/minute' (or 'off'), not {value!r}") from None


def _queue_size(config: Mapping[str, Any]) -> int:
    return settings.get_int({"NOTIFY_QUEUE_SIZE": _get(config, "NOTIFY_QUEUE_SIZE")}, "NOTIFY_QUEUE_SIZE",
                            minimum=1, maximum=100_000)


def _events_on(config: Mapping[str, Any]) -> bool:
    return settings.get_bool({"OWNER_EVENTS": _get(config, "OWNER_EVENTS")}, "OWNER_EVENTS")


def check(config: Mapping[str, Any]) -> list[str]:
    """Every problem in the owner's settings, for ``create_app``'s StartupError."""
    problems = []
    for read in (lambda: owner_keys(config), lambda: rate_limits(config), lambda: _queue_size(config),
                 lambda: _events_on(config)):
        try:
            read()
        except ConfigurationError as exc:
            problems.append(str(exc))
    return problems


def event_store(config: Mapping[str, Any], storage: Any) -> Any:
    """The raw event store for the selected conversation store (its own, or this machine's default)."""
    own = getattr(storage.backend, "event_store", None)
    if callable(own):
        store = own()
        missing = [m for m in protocol_methods(EventStore) if not callable(getattr(store, m, None))]
        if missing:
            raise ConfigurationError(
                f"the event store of storage backend {storage.name!r} does not implement {', '.join(missing)}"
            )
        return store
    root = Path(settings.get_str(config, "DATA_DIR", "data") or "data") / DEFAULT_EVENTS_DIR
    log.warning("storage backend %r keeps no owner events (it has no event_store()); they are kept on this "
                "machine under %s", storage.name, root)
    return DocumentEventStore(FileDocuments(root), where=str(root))


def build(config: Mapping[str, Any], backends: Any, problems: list[str]) -> OwnerEvents | None:
    """The app's ``OwnerEvents``, or None (with ``problems``) when its store cannot be built."""
    storage = backends.storage
    try:
        raw = event_store(config, storage)
        size = _queue_size(config)
    except ConfigurationError as exc:
        problems.append(str(exc))
        return None
    store = RetryingEvents(raw, storage.name, backends.make_retrier("storage", storage.name))
    here = _local(raw) and all(getattr(notifier, "local", False) is True for notifier in backends.notify)
    return OwnerEvents(store, Delivery(store, backends.notify, size, here=here))


def _local(store: Any) -> bool:
    """Whether the event store's calls never wait on another machine (it says ``local = True``)."""
    return getattr(store, "local", False) is True


def _batch_requests(app: Flask, delivery: Delivery) -> None:
    """A request's events are queued once it is over and its response sent (``delivery.Batch``)."""

    def current() -> Batch | None:
        return g.get("_owner_batch") if has_request_context() else None

    @app.before_request
    def start() -> None:
        g._owner_batch = Batch()

    @app.after_request
    def when_sent(response: Response) -> Response:
        batch = g.get("_owner_batch")
        if batch is not None:
            response.call_on_close(lambda: delivery.sent(batch))  # a server closes a response once it is sent
        return response

    @app.teardown_request
    def end(exc: BaseException | None) -> None:
        batch = g.get("_owner_batch")
        if batch is not None:
            delivery.ended(batch)

    delivery.current = current


def install(app: Flask) -> None:
    """Record events in every turn (unless ``TWIN_OWNER_EVENTS`` is false); serve ``/owner`` with owner keys."""
    from twin_server.owner import routes

    state = app.extensions[EXTENSION_KEY]
    if _events_on(app.config):
        state.turns.toolbox = OwnerTools(state.owner)
        state.turns.after_turn.append(state.owner.after_turn)
        _batch_requests(app, state.owner.delivery)
    keys = owner_keys(app.config)
    if keys.configured:
        routes.install(app, keys, rate_limits(app.config))
