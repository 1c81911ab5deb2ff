"""Metric samples added up in the process and written to prometheus_client's multiprocess files in batches.

In multiprocess mode every ``inc`` of a prometheus_client value writes the
worker's mmap file under one process-wide lock, after a pid check; a chat made
15 such writes. Here a sample only adds to an in-process total under one lock
(a histogram sample: its sum and the count of its bucket, found by bisection),
and a flush writes each value that changed once, with the total.

A ``Batcher`` flushes:

- every ``interval`` seconds, on a daemon thread of its own;
- before every exposition in the process (``flush_all``), so a scrape answered
  by this worker sees all of this worker's samples;
- at exit (``atexit``). A gunicorn worker stopped with SIGTERM (or QUIT, or
  retired by ``max_requests``) leaves through ``sys.exit`` once its threads are
  done, so it runs the exit flush; a worker killed with SIGKILL (gunicorn's
  timeout, or a graceful stop that ran over) loses at most one interval.

So a scrape answered by another worker sees a worker's samples up to one
interval late. A fork waits for a flush that is writing (a gunicorn master
that loaded the app, ``--preload``, has a flusher too). In a forked child
nothing is pending (the parent writes what it had), the locks are new and a
flusher thread of its own starts. A write that raises leaves the other series
written; the flush raises its error after them.

The histogram writes go to prometheus_client's private parts of a child
(``_upper_bounds``, ``_sum``, ``_buckets``): setup.cfg pins the versions they
are known in, and tests/telemetry/test_metric_batches.py fails if they change.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from bisect import bisect_left
from typing import Any

log = logging.getLogger(__name__)

_live: weakref.WeakSet[Batcher] = weakref.WeakSet()


class PendingCounter:
    """A counter child's increments not yet written."""

    __slots__ = ("_child", "_lock", "_amount")

    def __init__(self, child: Any, lock: threading.Lock) -> None:
        self._child = child
        self._lock = lock
        self._amount = 0.0

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self._amount += amount

    def take(self) -> float | None:
        """The pending total, now cleared; the batcher's lock is held."""
        amount, self._amount = self._amount, 0.0
        return amount or None

    def write(self, amount: float) -> None:
        self._child.inc(amount)

    def forget(self, lock: threading.Lock) -> None:
        self._lock, self._amount = lock, 0.0


class PendingHistogram:
    """A histogram child's samples not yet written: their sum and the count in each bucket."""

    __slots__ = ("_child", "_lock", "_bounds", "_sum", "_counts")

    def __init__(self, child: Any, lock: threading.Lock) -> None:
        self._child = child
        self._lock = lock
        self._bounds = tuple(child._upper_bounds)  # ends with +Inf, so every sample has a bucket
        self._sum = 0.0
        self._counts = [0] * len(self._bounds)

    def observe(self, amount: float) -> None:
        index = bisect_left(self._bounds, amount)  # the first bucket with amount <= its bound, as prometheus_client
        with self._lock:
            self._sum += amount
            self._counts[index] += 1

    def take(self) -> tuple[float, list[int]] | None:
        """The pending sum and counts, now cleared; the batcher's lock is held."""
        if not any(self._counts):
            return None
        pending = self._sum, self._counts
        self._sum, self._counts = 0.0, [0] * len(self._bounds)
        return pending

    def write(self, pending: tuple[float, list[int]]) -> None:
        total, counts = pending
        self._child._sum.inc(total)
        for bucket, count in zip(self._child._buckets, counts):
            if count:
                bucket.inc(count)

    def forget(self, lock: threading.Lock) -> None:
        self._lock, self._sum, self._counts = lock, 0.0, [0] * len(self._bounds)


class Batcher:
    """The pending samples of one app's metrics, and their flushes."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()  # every pending series' adds, and the take of them all
        self._flush_lock = threading.Lock()  # one flush writes at a time, so the exit flush waits for the thread's
        self._pending: dict[Any, PendingCounter | PendingHistogram] = {}
        self._start_flusher()
        _live.add(self)

    def counter(self, child: Any) -> PendingCounter:
        """The pending series of a counter child (the same one however often the child is bound)."""
        return self._bind(child, PendingCounter)

    def histogram(self, child: Any) -> PendingHistogram:
        return self._bind(child, PendingHistogram)

    def _bind(self, child: Any, kind: type) -> Any:
        with self._lock:
            series = self._pending.get(child)
            if series is None:
                series = self._pending[child] = kind(child, self._lock)
            return series

    def flush(self) -> None:
        """Write every pending total, one write per value that changed."""
        with self._flush_lock:
            with self._lock:
                taken = [(series, pending) for series in self._pending.values()
                         if (pending := series.take()) is not None]
            failure = None
            for series, pending in taken:
                try:
                    series.write(pending)
                except Exception as exc:  # the others' totals, taken already, would be lost with it
                    failure = failure or exc
            if failure is not None:
                raise failure

    def _start_flusher(self) -> None:
        threading.Thread(target=_flush_every, args=(weakref.ref(self), self.interval),
                         name="twin-metrics-flush", daemon=True).start()

    def _after_fork_in_child(self) -> None:
        self._lock, self._flush_lock = threading.Lock(), threading.Lock()
        for series in self._pending.values():
            series.forget(self._lock)
        self._start_flusher()


def _flush_every(batcher_ref: weakref.ref[Batcher], interval: float) -> None:
    """The flusher thread: ends once its batcher is gone (an app a test built and dropped)."""
    wait = threading.Event().wait
    while not wait(interval):
        batcher = batcher_ref()
        if batcher is None:
            return
        try:
            batcher.flush()
        except Exception:
            log.exception("writing the metrics failed; the next flush tries again with what is new")
        del batcher


def flush_all() -> None:
    """Flush every batcher of this process (before an exposition reads the files, and at exit)."""
    for batcher in list(_live):
        batcher.flush()


_held_over_fork: list[Batcher] = []
_forking = threading.Lock()  # threads forking at once take turns: each releases the flush locks it took


def _before_fork() -> None:
    """No flush writes across a fork: the child would find prometheus_client's file lock held, for ever."""
    _forking.acquire()
    _held_over_fork[:] = list(_live)
    for batcher in _held_over_fork:
        batcher._flush_lock.acquire()


def _after_fork_in_parent() -> None:
    for batcher in _held_over_fork:
        batcher._flush_lock.release()
    _held_over_fork.clear()
    _forking.release()


def _after_fork_in_child() -> None:
    global _forking
    _forking = threading.Lock()
    _held_over_fork.clear()
    for batcher in list(_live):
        batcher._after_fork_in_child()


atexit.register(flush_all)
os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
