"""Server-Sent Events plumbing shared by every streaming route.

Encoding events; the streaming response, which finishes its turn when the
server closes it; the loop that turns a reply's pieces into events with
heartbeats; and the relay that lets a stream send heartbeats while the LLM is
silent. ``TWIN_SSE_HEARTBEAT`` (default 15 seconds, 0 turns it off) sets the
interval.

Why a relay, and what it costs. An LLM's iterator blocks until its next piece,
and under WSGI only the request's own thread may write to its response; so a
stream that must send a keep-alive comment while it waits cannot read the
iterator itself: something else must be blocked in it. That is the one thing
the relay spends a thread on, and only while a stream is open: its pieces are
read by a reader of the worker's ``Readers``, one set of threads shared by
every stream of the worker (a reader that has finished one stream reads the
next; one idle for a minute ends), never a thread started per stream. The
waiting needs no thread: the request's thread waits for its next piece with a
timeout that is the heartbeat (``None`` is yielded when it passes). With
heartbeats off there is nothing to wait for, and the request's thread reads
the iterator itself. How many streams a worker holds at once is capped by
``inflight`` (``TWIN_MAX_STREAMS``).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any

from flask import Response, current_app, stream_with_context

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
READERS_KEY = "twin_server.sse_readers"


class Readers:
    """The threads that read the streamed replies of one worker (one app), shared by all its streams.

    ``run(job)`` hands ``job`` to an idle reader, or starts one when none is
    idle; a reader idle for ``idle_seconds`` ends. ``started`` counts the
    threads ever started, ``threads`` those alive, ``busy`` those reading now.
    """

    def __init__(self, idle_seconds: float = 60.0) -> None:
        self.idle_seconds = idle_seconds
        self.started = 0
        self._threads = 0
        self._idle = 0
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()

    @property
    def threads(self) -> int:
        with self._lock:
            return self._threads

    @property
    def busy(self) -> int:
        with self._lock:
            return self._threads - self._idle

    def run(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put(job)
                return
            self.started += 1
            self._threads += 1
        threading.Thread(target=self._work, args=(job,), name="twin-sse-reader", daemon=True).start()

    def _work(self, job: Callable[[], None]) -> None:
        try:
            while True:
                job()
                with self._lock:
                    self._idle += 1
                try:
                    job = self._jobs.get(timeout=self.idle_seconds)
                except queue.Empty:
                    with self._lock:
                        try:  # a job handed over just as this reader gave up waiting: it is this reader's
                            job = self._jobs.get_nowait()
                        except queue.Empty:
                            self._idle -= 1
                            return
        finally:
            with self._lock:
                self._threads -= 1


def install(app: Any) -> None:
    """Give ``app`` (one worker) the readers its streams share."""
    app.extensions[READERS_KEY] = Readers()


class Relay:
    """Iterates ``source`` on one of the worker's readers; iterating the relay gives its pieces, in order.

    The relay yields ``None`` after every ``heartbeat`` seconds without a piece
    (never, when ``heartbeat`` is 0 or None: then the consumer reads ``source``
    itself, no reader is needed), and re-raises in the consumer whatever the
    source raised. ``stop()`` asks the reader to stop after the piece it is
    waiting for; the source is closed, whatever the ending. ``readers``
    defaults to the current app's.
    """

    def __init__(self, source: Iterable[str], heartbeat: float | None, readers: Readers | None = None) -> None:
        self._source = source
        self._heartbeat = heartbeat or None
        self._readers = readers
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        self._reading = False
        if self._heartbeat is not None and readers is None:
            self._readers = current_app.extensions[READERS_KEY]

    def __iter__(self) -> Iterator[str | None]:
        with self._lock:
            if self._stop.is_set():
                return
            self._started = True
        if self._heartbeat is None:
            yield from self._inline()
            return
        self._readers.run(self._read)
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

    def _inline(self) -> Iterator[str]:
        pieces = iter(self._source)
        try:
            while True:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._reading = True
                try:
                    piece = next(pieces)
                except StopIteration:
                    return
                finally:
                    with self._lock:
                        self._reading = False
                yield piece
        finally:
            self.stop()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            # Closed here unless a reader is inside it: that one stops after its piece and closes it.
            if not self._started or (self._heartbeat is None and not self._reading):
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
