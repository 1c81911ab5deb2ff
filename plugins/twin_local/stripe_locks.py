"""The filesystem store's locks: 64 flock stripes per data directory, open for a process's life.

Each process keeps the stripe files open (opened on first use) with a
``threading.Lock`` in front of each: a flock serializes processes and separate
opens of a file, the thread lock the threads that share one open file (flocks
on one open file do not exclude each other). A forked child shares its
parent's open files, and so its flocks, and may inherit a thread lock held by
a thread the fork left behind: on its first use it opens files and makes locks
of its own. The per-process caches (tails, summaries) live here too, so they are renewed with them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from twin_local.tail_cache import SummaryCache, TailCache

LOCK_STRIPES = 64

_fork_guard = threading.Lock()


def _new_fork_guard() -> None:
    global _fork_guard
    _fork_guard = threading.Lock()  # the parent's may have been held by a thread that the fork left behind


os.register_at_fork(after_in_child=_new_fork_guard)


def stripe_of(session_id: str) -> int:
    return zlib.crc32(session_id.encode("ascii")) % LOCK_STRIPES  # hash() is salted per process


class ProcessLocks:
    """One process's open stripe files, the thread locks in front of them, and its tail cache."""

    def __init__(self, directory: Path) -> None:
        self.pid = os.getpid()
        self.directory = directory
        self.guards = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self.fds: list[int | None] = [None] * LOCK_STRIPES
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
            self.fds[stripe] = fd
        return fd

    def close(self) -> None:
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
        if locks.pid == os.getpid():
            return locks
        with _fork_guard:  # the first use in a forked child
            if self._locks.pid != os.getpid():
                inherited, self._locks = self._locks, ProcessLocks(self.directory)
                inherited.close()  # our copies of the parent's descriptors; the parent keeps its own
            return self._locks

    @contextlib.contextmanager
    def hold(self, session_id: str, mode: int) -> Iterator[ProcessLocks]:
        """``flock`` mode (``LOCK_SH``/``LOCK_EX``) on the session's stripe, the thread lock first."""
        stripe = stripe_of(session_id)
        locks = self.current()
        with locks.guards[stripe]:
            fd = locks.fd(stripe)
            fcntl.flock(fd, mode)
            try:
                yield locks
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._locks.pid == os.getpid():
            self._locks.close()
