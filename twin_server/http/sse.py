"""Server-Sent Events plumbing shared by every streaming route.

Encoding events; the streaming response, which finishes its turn when the
server closes it; the loop that turns a reply's pieces into events with
heartbeats; and a relay that wakes up for heartbeats. An LLM's iterator blocks
until its next piece, so a stream that must send a keep-alive comment while it
waits cannot read the iterator itself: ``Relay`` reads it on a daemon thread
into a queue, and its consumer wakes up every ``heartbeat`` seconds of silence
to say so (by yielding ``None``). ``TWIN_SSE_HEARTBEAT`` (default 15 seconds,
0 turns it off) sets that interval.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any

from flask import Response, stream_with_context

from twin_server import config as settings
from twin_server.errors import ConfigurationError

CONTENT_TYPE = "text/event-stream"  # Werkzeug adds "; charset=utf-8"
#: Headers every event stream sends: no caching, and no buffering by nginx-like proxies.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT = ": keep-alive\n\n"
DONE = "data: [DONE]\n\n"


def encode(data: Any, event: str | None = None) -> str:
    """One event: an optional ``event:`` line and one ``data:`` line of compact JSON."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n" if event else f"data: {payload}\n\n"


HEARTBEAT_SETTING = "SSE_HEARTBEAT"
DEFAULT_HEARTBEAT = 15.0


def heartbeat_seconds(config: Mapping[str, Any]) -> float:
    """``TWIN_SSE_HEARTBEAT``; ConfigurationError when it is not a number ≥ 0."""
    return settings.get_float(config, HEARTBEAT_SETTING, DEFAULT_HEARTBEAT, minimum=0)


def check(config: Mapping[str, Any]) -> list[str]:
    """The problem with ``TWIN_SSE_HEARTBEAT``, for ``create_app``'s StartupError."""
    try:
        heartbeat_seconds(config)
    except ConfigurationError as exc:
        return [str(exc)]
    return []


def event_response(events: Iterator[str], on_close: Callable[[], object]) -> Response:
    """The streaming response. The WSGI server closes it however it ends (PEP 3333), also when the
    client has gone; ``on_close`` then finishes the turn (as incomplete, unless it already was)."""
    response = Response(stream_with_context(events), mimetype=CONTENT_TYPE, headers=HEADERS)
    response.call_on_close(on_close)
    return response


def relay_events(
    reply: Any,
    piece_event: Callable[[str], str],
    error_event: Callable[[Exception], str],
) -> Generator[str, None, bool]:
    """A streamed reply's pieces as events, with heartbeats; returns True when it ended normally.

    When the LLM fails mid-stream, the partial turn is finished incomplete and
    ``error_event``'s event is the last. After a normal end the caller finishes
    the turn; a stream closed early is finished by ``event_response``'s ``on_close``.
    """
    try:
        for piece in reply:
            yield HEARTBEAT if piece is None else piece_event(piece)
    except Exception as exc:
        reply.finish(complete=False)
        yield error_event(exc)
        return False
    return True


_PIECE, _END, _ERROR = "piece", "end", "error"


class Relay:
    """Iterates ``source`` on a daemon thread; iterating the relay gives its pieces, in order.

    The relay yields ``None`` after every ``heartbeat`` seconds without a piece
    (never, when ``heartbeat`` is 0 or None), and re-raises in the consumer
    whatever the source raised. ``stop()`` asks the reader to stop after the
    piece it is waiting for; the reader closes the source, whatever the ending.
    """

    def __init__(self, source: Iterable[str], heartbeat: float | None) -> None:
        self._source = source
        self._heartbeat = heartbeat or None
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._started = False

    def __iter__(self) -> Iterator[str | None]:
        with self._lock:
            if self._stop.is_set():
                return
            self._started = True
            threading.Thread(target=self._read, name="twin-sse-relay", daemon=True).start()
        while True:
            try:
                kind, value = self._queue.get(timeout=self._heartbeat)
            except queue.Empty:
                yield None
                continue
            if kind == _PIECE:
                yield value
            elif kind == _END:
                return
            else:
                raise value

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            started = self._started
        if not started:
            _close(self._source)

    def _read(self) -> None:
        try:
            for piece in self._source:
                self._queue.put((_PIECE, piece))
                if self._stop.is_set():
                    break
            self._queue.put((_END, None))
        except BaseException as exc:  # handed to the consumer, which raises it in the request's thread
            self._queue.put((_ERROR, exc))
        finally:
            _close(self._source)


def _close(source: Iterator[str]) -> None:
    close = getattr(source, "close", None)
    if close is not None:
        close()
