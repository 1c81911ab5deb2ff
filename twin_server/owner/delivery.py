"""Storing and delivering events after the reply, never in its way.

Events go on a small bounded queue; one worker thread per process (started
with the first event, gone after ``IDLE_SECONDS`` without one) stores those
not stored yet (the ones detection found), then hands each new one to every
selected notifier, through the core's retry. What each notifier did is
written back to the event (``delivery``: ``delivered`` or ``failed``): a
delivery still failing after its retries is logged at ERROR and stays
undelivered until ``twin-server inbox --retry``. An event the full queue has
no room for is stored at once and stays ``pending`` (a WARNING), and
``--retry`` delivers it once it is ``REDELIVER_AFTER`` seconds old. The queue
holds each event once and each notifier is asked once per event, so no turn
is notified twice.

An HTTP request's events wait in a ``Batch`` until its response is sent (the
server closes the response), so the worker never takes the process, and the
GIL, from a reply on its way out; a response the server never closes lets its
batch go after ``GATE_SECONDS``. ``drain`` lets every batch go at once.

When the store and every notifier are ``here`` (their calls never wait on
another machine: files on this disk, a log line), the thread that sent a
response stores and delivers its batch itself, after the response: handing
an event to the worker cost more CPU than handling it (the request threads
and the worker trading the GIL at each of its file calls). Events that go
the other ways (outside a request, a batch past its gate) still take the queue.

``forget`` runs under the lock that storing takes, and remembers the last
number given out when it erased a session: an event of that session numbered
before it is not stored. Events are handled out of order (batches go as their
responses are sent, each in its own thread when ``here``), so a number is
remembered until no event numbered before it is still open.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Batch", "Delivery", "IDLE_SECONDS", "REDELIVER_AFTER"]

log = logging.getLogger("twin_server.owner")

IDLE_SECONDS = 30.0
#: A pending event older than this was lost with a queue (a full one, or a process that ended).
REDELIVER_AFTER = 300.0
DRAIN_AT_EXIT = 5.0
#: How long a finished request's events wait for its response to be sent, at most.
GATE_SECONDS = 1.0
POLL_SECONDS = 0.2

Item = tuple[int, Any, bool]  # (number, event, to be stored first)


class Batch:
    """The events of one request: kept while it runs, queued once it is over and its response sent."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.ended = self.sent = self.done = False
        self.deadline = 0.0


class Delivery:
    """The queue and its worker. ``notifiers`` are the app's, each behind the core's retry."""

    def __init__(self, store: Any, notifiers: Sequence[Any], size: int = 100, *, here: bool = False) -> None:
        self.store, self.notifiers, self.here = store, tuple(notifiers), here
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=size)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._pid = 0
        self._exit_hook = False
        self._numbers = itertools.count(1)
        self._storing = threading.Lock()  # one store-or-erase at a time between the storing threads and forget()
        self._forgotten: dict[str, int] = {}  # session id → the last number given out when it was erased
        self._open: set[int] = set()  # the numbers of events to store, put and not yet stored (or dropped)
        self._handled = threading.Condition()  # drain() waits on it for the batches handled in their own thread
        self._handling = 0
        self._waiting: list[Batch] = []  # ended, not yet sent
        #: The current request's batch, if any (set by the HTTP layer); None outside a request.
        self.current: Callable[[], Batch | None] = lambda: None

    @property
    def names(self) -> list[str]:
        return [notifier.name for notifier in self.notifiers]

    # -- putting events in ---------------------------------------------------------

    def put(self, event: Any, *, store: bool = False) -> None:
        """Queue ``event`` for its notifiers, to be stored first when ``store`` (never waits for room: with
        the queue full, an event to store is stored here, as the worker would, and left pending)."""
        if not self.notifiers and not store:
            return
        batch = self.current()
        with self._lock:
            item = (next(self._numbers), event, store)
            if store:
                self._open.add(item[0])
            if batch is not None and not batch.ended:
                batch.items.append(item)
                return
        self._enqueue(item)

    def ended(self, batch: Batch) -> None:
        """The request is over: its events go once its response is sent, or after ``GATE_SECONDS``."""
        with self._lock:
            batch.ended = True
            if not batch.items or batch.done:
                return
            if not batch.sent:
                batch.deadline = time.monotonic() + GATE_SECONDS
                self._waiting.append(batch)
                start = not self._alive()
            else:
                start = False
        if start:
            self._ensure_worker()  # it lets the batch go after its deadline
        elif batch.sent:
            self._let_go(batch, sent=True)

    def sent(self, batch: Batch) -> None:
        """The server closed the request's response: it is all sent."""
        with self._lock:
            batch.sent = True
            ready = batch.ended and batch.items
        if ready:
            self._let_go(batch, sent=True)

    def _let_go(self, batch: Batch, *, sent: bool = False) -> None:
        """Queue the batch's events, or handle them in this thread when its response is ``sent`` and all is here."""
        here = sent and self.here
        with self._lock:
            if batch.done:
                return
            batch.done = True
            if batch in self._waiting:
                self._waiting.remove(batch)
            if here:
                with self._handled:  # counted before the batch is done, so drain() never misses it
                    self._handling += 1
        if here:
            self._handle_here(batch.items)
            return
        for item in batch.items:
            self._enqueue(item)

    def _handle_here(self, items: Sequence[Item]) -> None:
        try:
            for item in items:
                self._handle(item)
        finally:
            with self._handled:
                self._handling -= 1
                if not self._handling:
                    self._handled.notify_all()

    def _overdue(self, now: float | None = None) -> None:
        with self._lock:
            due = [b for b in self._waiting if now is None or b.deadline <= now]
        for batch in due:
            self._let_go(batch)

    def _enqueue(self, item: Item) -> None:
        number, event, store = item
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            log.warning("the notification queue is full: %s %s stays pending until `twin-server inbox --retry`",
                        event.kind, event.id)
            if store:
                self._stored(number, event)  # as the worker stores: not if its session was erased since it was put
            return
        self._ensure_worker()

    def drain(self, timeout: float) -> bool:
        """Let every waiting batch go, then wait until everything queued or in hand was handled (True), or
        ``timeout``."""
        self._overdue()
        deadline = time.monotonic() + timeout
        with self._handled:
            while self._handling:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._handled.wait(left)
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    # -- what the worker does --------------------------------------------------------

    def forget(self, session_id: str, erase: Callable[[], T]) -> T:
        """Run ``erase`` (the session's events) so that no event of it still queued is stored after it."""
        with self._storing:
            with self._lock:
                self._forgotten[session_id] = next(self._numbers)
            return erase()

    def record(self, event: Any) -> bool:
        """Store ``event``; True when it is new (and so to be notified)."""
        return self.store.record_lead(event) if event.kind == "lead" else self.store.record_question(event)

    def deliver(self, event: Any, names: Sequence[str] | None = None) -> bool:
        """Hand ``event`` to each notifier not yet done with it (only ``names``, when given); True when all did."""
        done, states = True, {}
        for notifier in self.notifiers:
            if names is not None and notifier.name not in names:
                continue
            if event.delivery.get(notifier.name) == "delivered":
                continue
            try:
                notifier.notify(event)
            except Exception as exc:
                done = False
                log.error("notifier %s could not deliver %s %s after its retries (%s: %s); it stays undelivered "
                          "until `twin-server inbox --retry`", notifier.name, event.kind, event.id,
                          type(exc).__name__, exc)
                states[notifier.name] = "failed"
                continue
            states[notifier.name] = "delivered"
        if states:
            try:
                self.store.set_delivery(event.kind, event.id, states)
            except Exception as exc:
                log.error("could not record the deliveries of %s %s (%s)", event.kind, event.id, type(exc).__name__)
        return done

    def _stored(self, number: int, event: Any) -> bool:
        try:
            with self._storing:
                try:
                    if number <= self._forgotten.get(event.session_id, 0):
                        return False  # its conversation was deleted after it was put
                    return self.record(event)
                finally:
                    self._close(number)
        except Exception as exc:
            log.error("could not store %s %s of session %s (%s: %s)", event.kind, event.id, event.session_id,
                      type(exc).__name__, exc)
            return False

    def _close(self, number: int) -> None:
        """Event ``number`` is stored or dropped: forget the erasures no open event is numbered before."""
        with self._lock:
            self._open.discard(number)
            if self._forgotten:
                oldest = min(self._open, default=None)
                self._forgotten = {s: n for s, n in self._forgotten.items() if oldest is not None and n > oldest}

    def _handle(self, item: Item) -> None:
        number, event, store = item
        try:
            if not store or self._stored(number, event):
                self.deliver(event)
        except Exception:  # deliver() logs each notifier's failure; this is a bug, and must not stop the worker
            log.exception("delivering %s %s failed", event.kind, event.id)

    def _alive(self) -> bool:
        return self._worker is not None and self._pid == os.getpid() and self._worker.is_alive()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._alive():
                return
            self._pid = os.getpid()  # a forked process (a gunicorn worker) starts its own
            self._worker = threading.Thread(target=self._work, name="twin-notify", daemon=True)
            self._worker.start()
            if not self._exit_hook:
                atexit.register(self.drain, DRAIN_AT_EXIT)
                self._exit_hook = True

    def _work(self) -> None:
        idle_since = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                now = time.monotonic()
                self._overdue(now)
                with self._lock:
                    if self._queue.empty() and not self._waiting and now - idle_since >= IDLE_SECONDS:
                        self._worker = None
                        return
                continue
            try:
                self._handle(item)
            finally:
                self._queue.task_done()
                idle_since = time.monotonic()
