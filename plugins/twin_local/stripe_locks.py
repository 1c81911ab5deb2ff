"""The filesystem store's locks: 64 flock stripes per data directory, open for a process's life.

Each process keeps the stripe files open (opened on first use) with a
``threading.Lock`` in front of each: a flock serializes processes and separate
opens of a file, the thread lock the threads that share one open file (flocks
on one open file do not exclude each other). A forked child shares its
parent's open files, and so its flocks, and may inherit a thread lock held by
a thread the fork left behind: on its first use it opens files and makes locks
of its own. The per-process caches (tails, summaries) and open session files
(``twin_local.session_files``) live here too, so they are renewed with them.
A fork is noticed by a generation number the child bumps (``os.register_at_fork``), not by
comparing ``os.getpid()``: that is a system call, and it was made on every call of the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from twin_local.session_files import IDLE_SECONDS, READ_ONLY_ERRORS, SUMMARIES_PER_STRIPE, StripeFiles
from twin_local.tail_cache import SummaryCache, TailCache

LOCK_STRIPES = 64

_fork_guard = threading.Lock()
_generation = 0  # how many forks separate this process from the one that imported this module


def _after_fork_in_child() -> None:
    global _fork_guard, _generation
    _fork_guard = threading.Lock()  # the parent's may have been held by a thread that the fork left behind
    _generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def stripe_of(session_id: str) -> int:
    return zlib.crc32(session_id.encode("ascii")) % LOCK_STRIPES  # hash() is salted per process


class ProcessLocks:
    """One process's open stripe files, the thread locks in front of them, and its tail cache."""

    def __init__(self, directory: Path) -> None:
        self.generation = _generation
        self.directory = directory
        self.guards = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self.fds: list[int | None] = [None] * LOCK_STRIPES
        self.files = [StripeFiles() for _ in range(LOCK_STRIPES)]  # each used only under its stripe's guard
        self.summary_files = [StripeFiles(SUMMARIES_PER_STRIPE) for _ in range(LOCK_STRIPES)]  # likewise
        self.next_sweep = time.monotonic() + IDLE_SECONDS
        self.tails = TailCache()  # each entry is read and changed only under its session's stripe lock
        self.summaries = SummaryCache()

    def fd(self, stripe: int) -> int:
        """The stripe's lock file (call with its guard held)."""
        fd = self.fds[stripe]
        if fd is None:
            path = self.directory / f"{stripe}.lock"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # someone removed .locks before we opened this stripe; put it back
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                if exc.errno not in READ_ONLY_ERRORS:
                    raise
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # flock needs no write access: loads still work
            self.fds[stripe] = fd
        return fd

    def close_idle_files(self) -> None:
        """Close the session files no call has used for ``IDLE_SECONDS``, in every stripe no thread is using."""
        now = time.monotonic()
        self.next_sweep = now + IDLE_SECONDS
        for guard, files, summary_files in zip(self.guards, self.files, self.summary_files):
            if (files or summary_files) and guard.acquire(blocking=False):  # never waits: we may hold a stripe
                try:
                    files.close_idle(now)
                    summary_files.close_idle(now)
                finally:
                    guard.release()

    def close(self) -> None:
        for files in (*self.files, *self.summary_files):
            files.close()
        for fd in self.fds:
            if fd is not None:
                os.close(fd)
        self.fds = [None] * LOCK_STRIPES


class StripeLocks:
    """The stripes of one data directory, as this process (forked or not) must use them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._locks = ProcessLocks(directory)

    def current(self) -> ProcessLocks:
        locks = self._locks
        if locks.generation == _generation:
            return locks
        with _fork_guard:  # the first use in a forked child
            if self._locks.generation != _generation:
                inherited, self._locks = self._locks, ProcessLocks(self.directory)
                inherited.close()  # our copies of the parent's descriptors; the parent keeps its own
            return self._locks

    @contextlib.contextmanager
    def guard(self, session_id: str) -> Iterator[Stripe]:
        """The session's stripe with its thread lock held: this process's threads are kept out, not others."""
        stripe = self._stripe(session_id)
        with stripe.locks.guards[stripe.number]:
            yield stripe

    @contextlib.contextmanager
    def hold(self, session_id: str, mode: int) -> Iterator[Stripe]:
        """``flock`` mode (``LOCK_SH``/``LOCK_EX``) on the session's stripe, the thread lock first."""
        stripe = self._stripe(session_id)  # guard() and Stripe.flock() written out: two context managers cost more
        with stripe.locks.guards[stripe.number]:
            fd = stripe.locks.fd(stripe.number)
            fcntl.flock(fd, mode)
            try:
                yield stripe
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _stripe(self, session_id: str) -> Stripe:
        locks = self.current()
        if time.monotonic() >= locks.next_sweep:
            locks.close_idle_files()
        return Stripe(locks, stripe_of(session_id))

    def close(self) -> None:
        if self._locks.generation == _generation:
            self._locks.close()


class Stripe:
    """One stripe as its holder uses it: the flock, the stripe's open session files, the process's caches."""

    __slots__ = ("locks", "number", "files", "summary_files", "tails", "summaries")

    def __init__(self, locks: ProcessLocks, number: int) -> None:
        self.locks, self.number = locks, number
        self.files: StripeFiles = locks.files[number]
        self.summary_files: StripeFiles = locks.summary_files[number]
        self.tails: TailCache = locks.tails
        self.summaries: SummaryCache = locks.summaries

    @contextlib.contextmanager
    def flock(self, mode: int) -> Iterator[None]:
        """The stripe's ``flock`` (call with its thread lock held: flocks on one open file do not exclude)."""
        fd = self.locks.fd(self.number)
        fcntl.flock(fd, mode)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
