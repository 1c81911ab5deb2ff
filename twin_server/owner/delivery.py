"""Delivering events to the notifiers, after the reply and never in its way.

Recorded events are put on a small bounded queue; one worker thread per
process (started on the first event, gone after ``IDLE_SECONDS`` without one)
hands each to every selected notifier, through the core's retry. What each
notifier did is written back to the event (``delivery``: ``delivered`` or
``failed``), so a delivery that still fails after its retries is logged at
ERROR and stays undelivered until ``twin-server inbox --retry``; an event the
full queue had no room for stays ``pending`` (logged at WARNING), and
``--retry`` delivers it once it is ``REDELIVER_AFTER`` seconds old. The queue
holds each event once and each notifier is asked once per event, so no turn
is notified twice.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["Delivery", "IDLE_SECONDS", "REDELIVER_AFTER"]

log = logging.getLogger("twin_server.owner")

IDLE_SECONDS = 30.0
#: A pending event older than this was lost with a queue (a full one, or a process that ended).
REDELIVER_AFTER = 300.0
DRAIN_AT_EXIT = 5.0


class Delivery:
    """The queue and its worker. ``notifiers`` are the app's, each behind the core's retry."""

    def __init__(self, store: Any, notifiers: Sequence[Any], size: int = 100) -> None:
        self.store, self.notifiers = store, tuple(notifiers)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._pid = 0
        self._exit_hook = False

    @property
    def names(self) -> list[str]:
        return [notifier.name for notifier in self.notifiers]

    def put(self, event: Any) -> None:
        """Queue ``event`` for its notifiers (never blocks)."""
        if not self.notifiers:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("the notification queue is full: %s %s stays pending until `twin-server inbox --retry`",
                        event.kind, event.id)
            return
        self._ensure_worker()

    def drain(self, timeout: float) -> bool:
        """Wait until every queued event was handled (True), or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def deliver(self, event: Any, names: Sequence[str] | None = None) -> bool:
        """Hand ``event`` to each notifier not yet done with it (only ``names``, when given); True when all did."""
        done = True
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
                self._mark(event, notifier.name, "failed")
                continue
            self._mark(event, notifier.name, "delivered")
        return done

    def _mark(self, event: Any, notifier: str, state: str) -> None:
        try:
            self.store.set_delivery(event.kind, event.id, notifier, state)
        except Exception as exc:
            log.error("could not record that notifier %s %s %s %s (%s)", notifier, state, event.kind, event.id,
                      type(exc).__name__)

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is not None and self._pid == os.getpid() and self._worker.is_alive():
                return
            self._pid = os.getpid()  # a forked process (a gunicorn worker) starts its own
            self._worker = threading.Thread(target=self._work, name="twin-notify", daemon=True)
            self._worker.start()
            if not self._exit_hook:
                atexit.register(self.drain, DRAIN_AT_EXIT)
                self._exit_hook = True

    def _work(self) -> None:
        while True:
            try:
                event = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            try:
                self.deliver(event)
            except Exception:  # deliver() logs each notifier's failure; this is a bug, and must not stop the worker
                log.exception("delivering %s %s failed", event.kind, event.id)
            finally:
                self._queue.task_done()
