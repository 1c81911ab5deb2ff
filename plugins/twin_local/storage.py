"""The filesystem conversation store: one append-only JSON Lines file per session.

Layout under the data directory::

    <root>/<session_id>.jsonl    one Message.to_dict() per line, oldest first
    <root>/<session_id>.summary.ndjson  its rolling summaries, newest last (``twin_local.summaries``)
    <root>/.locks/<n>.lock       flock stripes, n = crc32(session_id) % 64
    <root>/owner-events/         the owner's leads and unanswered questions (``event_store()``)

A turn is appended with a single ``write`` under an exclusive ``flock`` on the
session's stripe, so concurrent appends from threads and processes never
interleave, and a crash can at worst leave a torn last line. Readers trust only
the bytes up to the last newline; the next append cuts any torn tail off.

The stripe files stay open for a process's life (``twin_local.stripe_locks``;
reopened after a fork), so the ``.locks`` directory must not be removed while
servers run.

A load of the last ``limit`` messages starts from the session's cached tail
(``twin_local.tail_cache``) when it has one, and parses only the lines other
processes appended since; an append extends the tail it has just written after.
Session files stay open between calls, a few per stripe (``twin_local.session_files``),
so a returning session's load is one ``stat`` when nothing was appended since (no
lock is needed to see that the file has not grown), and its append a ``stat`` and
the ``write`` under the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twin_local import session_lines, summaries
from twin_local.stripe_locks import LOCK_STRIPES, Stripe, StripeLocks  # noqa: F401  (LOCK_STRIPES: the layout)
from twin_server.errors import BackendUnavailable, ConfigurationError, ValidationError
from twin_server import is_session_id, Message, Summary

__all__ = ["FilesystemStore"]

log = logging.getLogger("twin_local.storage")

SUFFIX = ".jsonl"


class FilesystemStore:
    """A ConversationStore keeping each session in ``<root>/<session_id>.jsonl``."""

    local = True  # its calls never wait on another machine (``ConversationStore``)

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self._prefix = os.path.join(self.root, "")  # session paths are built by concatenation, not pathlib
        self._locks = self.root / ".locks"
        try:
            self._locks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the data directory {self.root}: {exc.strerror}") from exc
        self._stripes = StripeLocks(self._locks)

    def __del__(self) -> None:
        stripes = getattr(self, "_stripes", None)
        if stripes is not None:
            stripes.close()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "FilesystemStore":
        return cls(Path(config.get("DATA_DIR") or "data"))

    # -- the ConversationStore protocol --------------------------------------

    def load(self, session_id: str, limit: int | None = None) -> list[Message]:
        """The session's messages, oldest first; only the last ``limit`` when given."""
        path = self._path(session_id)
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        if limit == 0:
            return []
        try:
            with self._stripes.guard(session_id) as stripe:
                file, st = stripe.files.stat(session_id, path)
                cached = limit is not None and limit <= stripe.tails.max_messages
                if file is not None and cached:
                    tail = stripe.tails.get(session_id)
                    # Nothing appended since the tail was read through this open file: no lock and no read.
                    # A write under way would have grown the file already, so this is the state before it.
                    if tail is not None and tail.file is file and st.st_size == tail.end:
                        if len(tail.messages) >= limit or tail.whole:
                            return tail.messages[-limit:]
                # A shared lock keeps a reader from seeing half of a turn that is being written.
                with stripe.flock(fcntl.LOCK_SH):
                    if file is None:
                        file, st = stripe.files.open(session_id, path)
                        if file is None:
                            stripe.tails.drop(session_id)
                            return []
                    else:
                        st = None  # the size seen before the lock may be that of a write under way
                    return session_lines.read_newest(file, st, session_id, limit if cached else None, limit,
                                                     stripe.tails)
        except OSError as exc:
            raise _unavailable("read", exc) from exc

    def append(self, session_id: str, messages: Sequence[Message]) -> None:
        """Append all of ``messages`` in one write, or none of them."""
        path = self._path(session_id)
        data = _encode(messages)
        if not data:
            return
        try:
            with self._stripes.hold(session_id, fcntl.LOCK_EX) as stripe:
                file, st = stripe.files.writable(session_id, path)
                tail = stripe.tails.get(session_id)
                if tail is not None and not session_lines.ends_as_cached(file, st, tail):
                    stripe.tails.drop(session_id)
                    tail = None
                # A tail that still matches proves the file ends in a complete line: no torn-tail check.
                size = st.st_size if tail is not None else session_lines.repair(file.fd, session_id, st.st_size)
                _write_all(file.fd, data, size)
                session_lines.remember(stripe.tails, session_id, file, size, data, messages, tail)
        except OSError as exc:
            raise _unavailable("write", exc) from exc

    def delete(self, session_id: str) -> bool:
        """Erase the session; True when there was a file to erase."""
        path = self._path(session_id)
        try:
            with self._lock(session_id, fcntl.LOCK_EX) as stripe:
                self._forget(stripe, session_id)
                summaries.erase(self._summary_path(session_id))
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    return False
                return True
        except OSError as exc:
            raise _unavailable("delete", exc) from exc

    # -- the rolling summary (optional part of the protocol) -------------------

    def load_summary(self, session_id: str) -> Summary | None:
        """The session's summary; read again only when its file changed (one ``stat`` per turn)."""
        path = self._summary_path(session_id)
        cache = self._stripes.current().summaries
        try:
            st = os.stat(path)
        except FileNotFoundError:
            cache.drop(session_id)
            return None
        except OSError as exc:
            raise _unavailable("read the summary of", exc) from exc
        key = summaries.state(st)
        found, summary = cache.get(session_id, key)
        if not found:
            summary = summaries.load(path, session_id)
            cache.put(session_id, key, summary)
        return summary

    def save_summary(self, session_id: str, summary: Summary) -> None:
        try:
            with self._lock(session_id, fcntl.LOCK_EX) as stripe:
                written = summaries.save(self._summary_path(session_id), self._path(session_id), summary,
                                         stripe.summary_files)
                if written is not None:  # as a load would give it back (timestamps in UTC), without reading it
                    stripe.summaries.put(session_id, written, Summary.from_json(summary.to_json()))
        except OSError as exc:
            raise _unavailable("write the summary of", exc) from exc

    def _summary_path(self, session_id: str) -> str:
        return self._path(session_id)[: -len(SUFFIX)] + summaries.SUFFIX  # a str: a Path costs more than the stat

    # -- the optional methods (see ConversationStore) -------------------------

    def event_store(self):
        """The owner's events, under ``<root>/owner-events``."""
        from twin_local.listing import event_store

        return event_store(self.root)

    def sessions(self, limit: int, cursor: str | None = None):
        """The conversations, last written first (see ``twin_local.listing``)."""
        from twin_local.listing import list_sessions

        return list_sessions(self.root, limit, cursor)

    # -- expiry (TWIN_SESSION_TTL) -------------------------------------------

    def sweep(self, max_age_seconds: float, *, now: float | None = None) -> int:
        """Erase every session untouched for more than ``max_age_seconds``; return how many.

        A session's age is the time since its last write (its file's mtime). It is
        checked again under the session's lock, so a session written to while the
        sweep runs is kept. ``twin-server sweep`` runs this from cron or a timer.
        """
        if max_age_seconds < 0:
            raise ValueError("max_age_seconds must not be negative")
        cutoff = (time.time() if now is None else now) - max_age_seconds
        removed = 0
        try:
            candidates = [e.name[: -len(SUFFIX)] for e in os.scandir(self.root) if e.name.endswith(SUFFIX)]
        except OSError as exc:
            raise _unavailable("list", exc) from exc
        for session_id in candidates:
            if is_session_id(session_id) and self._erase_if_older(session_id, cutoff):
                removed += 1
        return removed

    def _erase_if_older(self, session_id: str, cutoff: float) -> bool:
        path = self._path(session_id)
        try:
            if os.stat(path).st_mtime >= cutoff:
                return False
            with self._lock(session_id, fcntl.LOCK_EX) as stripe:
                if os.stat(path).st_mtime >= cutoff:
                    return False
                self._forget(stripe, session_id)
                os.unlink(path)
                summaries.erase(self._summary_path(session_id))
                return True
        except FileNotFoundError:  # deleted by someone else meanwhile
            return False
        except OSError as exc:
            raise _unavailable("expire", exc) from exc

    # -- helpers ---------------------------------------------------------------

    def _path(self, session_id: str) -> str:
        """The session's file, after checking the id can name nothing else."""
        if not is_session_id(session_id):
            raise ValidationError("invalid session id")
        return self._prefix + session_id + SUFFIX

    def _forget(self, stripe: Stripe, session_id: str) -> None:
        """Before erasing the session: close its files (or its disk space stays taken), drop its tail."""
        stripe.files.forget(session_id)
        stripe.summary_files.forget(self._summary_path(session_id))
        stripe.tails.drop(session_id)

    def _lock(self, session_id: str, mode: int) -> contextlib.AbstractContextManager[Stripe]:
        return self._stripes.hold(session_id, mode)


def _encode(messages: Sequence[Message]) -> bytes:
    """All records of a turn as one bytes object, before any file is touched."""
    for message in messages:
        if not isinstance(message, Message):
            raise TypeError(f"expected Message, not {type(message).__name__}")
    return b"".join(message.to_json_line() + b"\n" for message in messages)


def _write_all(fd: int, data: bytes, size: int) -> None:
    """One write of the whole turn; on a failed follow-up write, truncate back to ``size``."""
    view = memoryview(data)
    written = 0
    try:
        while written < len(data):
            count = os.write(fd, view[written:])
            if count == 0:
                raise OSError(errno.EIO, "write made no progress")
            written += count
    except OSError:
        if written:
            try:
                os.ftruncate(fd, size)
            except OSError:
                log.error("could not truncate a partly written turn back to %d bytes", size)
        raise


def _unavailable(action: str, exc: OSError) -> BackendUnavailable:
    reason = errno.errorcode.get(exc.errno or 0, "OSError")
    return BackendUnavailable(f"filesystem store could not {action} the conversation ({reason})")
