"""A ``limits`` storage in one SQLite file: counters shared by every process of one machine.

The ``limits`` library ships storages for memory (one process), Redis/Valkey,
Memcached and MongoDB (servers), but none for several gunicorn workers on one
machine without a server. Importing this module registers the ``sqlite``
scheme::

    sqlite:////var/lib/twin-server/limits.sqlite     (absolute path: four slashes)
    sqlite:///limits.sqlite                          (relative to the working directory)

It holds fixed-window counters (the ``limits`` ``Storage`` interface, plus
``incr_many`` to count several windows in one statement). An increment is one
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` statement: atomic across
processes, its lock taken and released inside SQLite, never held while Python
waits for the GIL. The file is in WAL mode (readers never wait) with
``synchronous=OFF``: an OS crash may lose the last counts, never corrupt the
file. Connections are opened per thread and per process (never shared across
a fork).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from limits.errors import StorageError
from limits.storage import Storage

__all__ = ["SQLiteStorage"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID"
_UPSERT = """
INSERT INTO counters (key, value, expires) VALUES {rows}
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN counters.expires <= :now THEN excluded.value ELSE counters.value + excluded.value END,
    expires = CASE WHEN counters.expires <= :now THEN excluded.expires ELSE counters.expires END
RETURNING key, value
"""
#: Expired rows are deleted on every this-many increments of a process.
PURGE_EVERY = 1000


@functools.lru_cache(maxsize=8)
def _upsert(count: int) -> str:
    return _UPSERT.format(rows=", ".join(f"(:k{i}, :amount, :e{i})" for i in range(count)))


def local_file(uri: str | None, scheme: str) -> tuple[Path, str]:
    """The file a ``scheme:///relative`` or ``scheme:////absolute`` URI names (its folder made), and its query."""
    path, _, query = (uri or "").partition("://")[2].partition("?")
    if not path.startswith("/") or len(path) < 2:
        raise ValueError(f"a {scheme} storage URI is {scheme}:///relative/path or {scheme}:////absolute/path, not {uri!r}")
    file = Path(path[1:]).absolute()
    file.parent.mkdir(parents=True, exist_ok=True)
    return file, query


class SQLiteStorage(Storage):
    """Fixed-window counters in a SQLite table ``counters(key, value, expires)``."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        *,
        clock: Callable[[], float] = time.time,
        **options: float | str | bool,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path, _ = local_file(uri, "sqlite")
        self.clock = clock
        self._local = threading.local()
        self._increments = 0
        self._connection()  # fail at startup, not at the first request, when the file cannot be made

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=OFF")  # counters, not records: no fsync per write
            connection.execute(_SCHEMA)
            local.connection, local.pid = connection, os.getpid()
        return local.connection

    def incr_many(self, entries: Sequence[tuple[str, float]], amount: int = 1) -> list[int]:
        """Add ``amount`` to every ``(key, expiry)`` counter in one statement; their new values, in order."""
        now = self.clock()
        params: dict[str, object] = {"now": now, "amount": amount}
        for i, (key, expiry) in enumerate(entries):
            params[f"k{i}"], params[f"e{i}"] = key, now + expiry
        try:
            connection = self._connection()
            values = dict(connection.execute(_upsert(len(entries)), params).fetchall())
            self._increments += 1
            if self._increments % PURGE_EVERY == 0:
                connection.execute("DELETE FROM counters WHERE expires <= ?", (now,))
        except sqlite3.Error as exc:
            if self.wrap_exceptions:
                raise StorageError(exc) from exc
            raise
        return [int(values[key]) for key, _ in entries]

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return self.incr_many([(key, expiry)], amount)[0]

    def get(self, key: str) -> int:
        row = self._connection().execute(
            "SELECT value FROM counters WHERE key = ? AND expires > ?", (key, self.clock())
        ).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        now = self.clock()
        row = self._connection().execute("SELECT expires FROM counters WHERE key = ? AND expires > ?", (key, now)).fetchone()
        return float(row[0]) if row else now

    def check(self) -> bool:
        return self._connection().execute("SELECT 1").fetchone() == (1,)

    def reset(self) -> int:
        return self._connection().execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        self._connection().execute("DELETE FROM counters WHERE key = ?", (key,))
