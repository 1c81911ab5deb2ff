"""Chats in progress per worker: caps that keep the worker's threads free for probes and the rest.

Under gunicorn's ``gthread`` worker a request holds one of the worker's threads
until its response is sent: a chat while the model answers, an event stream
for its whole life (and a relay reader besides, see ``sse``). When every
thread holds a chat, nothing else is answered — not ``/health``, not
``/ready``, not the page. So each worker (each app) admits at most:

``TWIN_MAX_CHATS``    chats in progress (``POST`` to ``CHAT_PATHS``), streams included;
                      default: the worker's threads less an eighth of them (at least 2),
                      which stay for everything else (56 of 64)
``TWIN_MAX_STREAMS``  of those, event streams (``/chat/stream``, ``/v1`` with ``"stream": true``);
                      default: half the worker's threads (32 of 64)

``off`` lifts a cap. A chat over either is refused at once, before its body is
validated or anything is counted or spent, with 503 "Server busy" and
``Retry-After`` (a ``/v1`` body is read, not validated, to see whether it streams;
it is read in a place already taken, so a body sent slowly costs a place, not a
thread beyond them). A stream's place is given back when the server closes its
response (PEP 3333's ``close``: after its last byte, or when its client has
gone), not when the view returns; any other chat's when the request ends.

The worker's thread count is what ``gunicorn.conf.py`` tells each worker it
forks (``THREADS_ENV``, gunicorn's final ``threads`` setting, command line
included); elsewhere the defaults assume ``gunicorn.conf.py``'s 64 threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, Request, Response, g, request
from marshmallow import fields

from twin_server import config as settings
from twin_server.app_state import EXTENSION_KEY
from twin_server.errors import ConfigurationError, LimitExceeded
from twin_server.quotas.policy import CHAT_PATHS

__all__ = ["Gate", "Place", "ServerBusy", "THREADS_ENV", "check", "default_caps", "install"]

THREADS_ENV = "_TWIN_WORKER_THREADS"  # not TWIN_*: set by gunicorn.conf.py, not an operator's setting
DEFAULT_THREADS = 64
RETRY_AFTER = 5.0
STREAM_PATH = "/chat/stream"
OPENAI_PATH = "/v1/chat/completions"
OFF = {"off", "none", "false", "no"}


class ServerBusy(LimitExceeded):
    """This worker has as many chats (or streams) in progress as it may (503, Retry-After)."""


def worker_threads() -> int:
    try:
        return max(1, int(os.environ.get(THREADS_ENV) or DEFAULT_THREADS))
    except ValueError:
        return DEFAULT_THREADS


def default_caps(threads: int) -> tuple[int, int]:
    """(chats, streams) for a worker of ``threads`` threads."""
    chats = max(1, threads - max(2, threads // 8))
    return chats, max(1, min(chats, threads // 2))


def _cap(config: Mapping[str, Any], key: str, default: int) -> int | None:
    value = config.get(key)
    if value is None or str(value).strip() == "":
        return default
    if str(value).strip().lower() in OFF:
        return None
    return settings.get_int(config, key, minimum=1)


def caps(config: Mapping[str, Any]) -> tuple[int | None, int | None]:
    chats, streams = default_caps(worker_threads())
    return _cap(config, "MAX_CHATS", chats), _cap(config, "MAX_STREAMS", streams)


def check(config: Mapping[str, Any]) -> list[str]:
    """The problems with ``TWIN_MAX_CHATS`` and ``TWIN_MAX_STREAMS``, for ``create_app``'s StartupError."""
    problems = []
    for key in ("MAX_CHATS", "MAX_STREAMS"):
        try:
            _cap(config, key, 1)
        except ConfigurationError as exc:
            problems.append(str(exc))
    return problems


class Gate:
    """Counts a worker's chats and streams in progress; ``enter`` admits a chat or raises ServerBusy."""

    def __init__(self, max_chats: int | None, max_streams: int | None) -> None:
        self.max_chats, self.max_streams = max_chats, max_streams
        self.chats = self.streams = 0
        self._lock = threading.Lock()

    def enter(self) -> "Place":
        with self._lock:
            if self.max_chats is not None and self.chats >= self.max_chats:
                raise ServerBusy(f"{self.chats} chats are in progress; try again shortly.", retry_after=RETRY_AFTER)
            self.chats += 1
        return Place(self)


class Place:
    """One admitted chat: ``stream()`` makes it a stream (or raises ServerBusy), ``leave()`` gives it back, once."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.streaming = False
        self.left = False

    def stream(self) -> None:
        gate = self.gate
        with gate._lock:
            if gate.max_streams is not None and gate.streams >= gate.max_streams:
                raise ServerBusy(f"{gate.streams} streams are open; try again shortly.", retry_after=RETRY_AFTER)
            gate.streams += 1
            self.streaming = True

    def leave(self) -> None:
        gate = self.gate
        with gate._lock:
            if not self.left:
                self.left = True
                gate.chats -= 1
                gate.streams -= self.streaming


def wants_stream(current: Request) -> bool:
    """Whether a chat request will be answered as an event stream (a /v1 body is peeked at, not validated)."""
    if current.path == STREAM_PATH:
        return True
    if current.path != OPENAI_PATH:
        return False
    try:
        body = current.get_json(silent=True)  # cached; the route still reads it and reports what is wrong with it
    except RecursionError:  # nested too deeply for json's decoder: the route answers it with a 400
        return False
    value = body.get("stream") if isinstance(body, dict) else None
    # What the /v1 schema's Boolean reads as true, so that no spelling of "true" passes a stream off as a chat.
    return isinstance(value, (bool, int, str)) and value in fields.Boolean.truthy


def install(app: Flask) -> None:
    """Put the gate in front of the chat endpoints (after the rate limit, which refuses for less)."""
    max_chats, max_streams = caps(app.config)
    state = app.extensions[EXTENSION_KEY]
    state.errors.register(ServerBusy, 503, "Server busy")
    if max_chats is None and max_streams is None:
        return
    gate = Gate(max_chats, max_streams)
    app.extensions["twin_server.inflight"] = gate

    @app.before_request
    def admit() -> None:
        current = request._get_current_object()
        if current.method == "POST" and current.path in CHAT_PATHS:
            # A place first, then the body is read (a /v1 body says whether it streams): a client that sends
            # its body slowly holds one of the places, never a thread beyond them.
            g.twin_inflight = place = gate.enter()
            if wants_stream(current):
                place.stream()

    @app.after_request
    def leave_when_sent(response: Response) -> Response:
        place = g.get("twin_inflight")
        if place is not None and response.is_streamed:
            g.twin_inflight_streams = True
            response.call_on_close(place.leave)
        return response

    @app.teardown_request
    def leave_unless_streaming(exc: BaseException | None) -> None:
        # Also runs when the view returns a stream, before its first byte: a stream's place waits for its close.
        context = g._get_current_object()  # one context lookup, not two
        place = context.get("twin_inflight")
        if place is not None and not context.get("twin_inflight_streams"):
            place.leave()
