"""Session files kept open per process, a few per lock stripe, so a returning session's turn opens nothing.

Opening a session file for every load and append cost an ``open`` and a
``close`` each, and every system call hands the GIL to the request threads
and back. A ``SessionFile`` stays open between calls instead. It is trusted
only while the session's path still names its inode: every use starts with a
``stat`` of the path (the ``fstat`` the call needed anyway for the size), and
a path that is gone or names another inode closes it. Comparing inodes is
enough because an open file's inode cannot be freed, so its number cannot be
given to a new file (a session deleted and started again) while we hold it.

Only the thread holding the stripe's thread lock touches the stripe's files,
so none is closed under a thread using it. Each stripe keeps its
``PER_STRIPE`` most recently used session files and ``SUMMARIES_PER_STRIPE``
summary files (64 stripes: 384 descriptors at most, beside the 64 lock files), and
about every ``IDLE_SECONDS`` a call closes those unused for that long
(``ProcessLocks.close_idle_files``); out of descriptors, a stripe closes its
own before an open fails. A session deleted by another process keeps its
disk space until this one closes it: on its next use, its eviction, or that
sweep (the tail cache, likewise, keeps its messages until then). This
process's own delete closes it first.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import time
from collections import OrderedDict

PER_STRIPE = 4
#: Summary files (``twin_local.summaries``) are written once in a few turns: fewer of them are kept open.
SUMMARIES_PER_STRIPE = 2
IDLE_SECONDS = 60.0
_READ_WRITE = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
#: What an open to write raises in a data directory we may only read (then a file is opened to read).
READ_ONLY_ERRORS = (errno.EACCES, errno.EROFS, errno.EPERM)


@dataclasses.dataclass(slots=True, eq=False)
class SessionFile:
    """One open session file (compared by identity: a file reopened is another ``SessionFile``)."""

    fd: int
    dev: int
    ino: int
    writable: bool
    used: float
    written_to: int = -1  # where this process's last write through it ended (-1: none yet)


class StripeFiles:
    """The open files of one stripe by key (session id or path), least recently used first; call with the
    stripe's thread lock held."""

    def __init__(self, limit: int = PER_STRIPE) -> None:
        self.limit = limit
        self._files: OrderedDict[str, SessionFile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._files)

    def stat(self, session_id: str, path: str) -> tuple[SessionFile | None, os.stat_result | None]:
        """The session's open file and the path's ``stat`` while the path still names it, else (None, None)."""
        file = self._files.get(session_id)
        if file is None:
            return None, None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is None or st.st_ino != file.ino or st.st_dev != file.dev:
            self.forget(session_id)
            return None, None
        file.used = time.monotonic()
        self._files.move_to_end(session_id)
        return file, st

    def open(self, session_id: str, path: str) -> tuple[SessionFile | None, os.stat_result | None]:
        """The session's file opened now to read, and its ``fstat``; (None, None) when it does not exist."""
        try:
            return self._open(session_id, path, writable=False)
        except FileNotFoundError:
            return None, None

    def writable(self, session_id: str, path: str) -> tuple[SessionFile, os.stat_result]:
        """The session's file to append to (created if need be) and its ``stat``: one system call when it is open."""
        file, st = self.stat(session_id, path)
        if file is not None and st is not None and file.writable:
            return file, st
        return self._open(session_id, path, writable=True)

    def _open(self, session_id: str, path: str, *, writable: bool) -> tuple[SessionFile, os.stat_result]:
        self.forget(session_id)
        try:
            fd, can_write = _open(path, writable)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE) or not self._files:
                raise
            self.close()  # out of descriptors: those kept only to save an open go first
            fd, can_write = _open(path, writable)
        try:
            st = os.fstat(fd)  # of the file opened: the path may name another by now
        except OSError:
            os.close(fd)
            raise
        file = SessionFile(fd, st.st_dev, st.st_ino, can_write, time.monotonic())
        self._files[session_id] = file
        while len(self._files) > self.limit:
            _, evicted = self._files.popitem(last=False)
            os.close(evicted.fd)
        return file, st

    def forget(self, session_id: str) -> None:
        """Close the session's file (it is being erased, or its path names another file)."""
        file = self._files.pop(session_id, None)
        if file is not None:
            os.close(file.fd)

    def close_idle(self, now: float) -> None:
        """Close the files last used ``IDLE_SECONDS`` or more before ``now``."""
        while self._files:
            session_id, file = next(iter(self._files.items()))
            if now - file.used < IDLE_SECONDS:
                return
            self.forget(session_id)

    def close(self) -> None:
        while self._files:
            _, file = self._files.popitem()
            os.close(file.fd)


def _open(path: str, writable: bool) -> tuple[int, bool]:
    if writable:
        return os.open(path, _READ_WRITE | os.O_CREAT, 0o600), True
    try:
        return os.open(path, _READ_WRITE), True  # so that the append after this load can use it
    except OSError as exc:
        if exc.errno not in READ_ONLY_ERRORS:
            raise
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False  # a data directory we may only read
