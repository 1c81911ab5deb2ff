"""Server-Sent Events plumbing: encoding events, and a relay that wakes up for heartbeats.

An LLM's iterator blocks until its next piece, so a stream that must send a
keep-alive comment while it waits cannot read the iterator itself.
``Relay`` reads it on a daemon thread into a queue, and its consumer wakes up
every ``heartbeat`` seconds of silence to say so (by yielding ``None``).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

CONTENT_TYPE = "text/event-stream"  # Werkzeug adds "; charset=utf-8"
#: Headers every event stream sends: no caching, and no buffering by nginx-like proxies.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT = ": keep-alive\n\n"
DONE = "data: [DONE]\n\n"


def encode(data: Any, event: str | None = None) -> str:
    """One event: an optional ``event:`` line and one ``data:`` line of compact JSON."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n" if event else f"data: {payload}\n\n"


_PIECE, _END, _ERROR = "piece", "end", "error"


class Relay:
    """Iterates ``source`` on a daemon thread; iterating the relay gives its pieces, in order.

    The relay yields ``None`` after every ``heartbeat`` seconds without a piece
    (never, when ``heartbeat`` is 0 or None), and re-raises in the consumer
    whatever the source raised. ``stop()`` asks the reader to stop after the
    piece it is waiting for; the reader closes the source, whatever the ending.
    """

    def __init__(self, source: Iterator[str], heartbeat: float | None) -> None:
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
