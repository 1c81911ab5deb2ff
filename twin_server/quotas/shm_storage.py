"""A ``limits`` storage in one memory-mapped file: counters shared by every process of one machine.

The cheap sibling of ``limits_sqlite``: the same counters (fixed windows, the
``limits`` ``Storage`` interface plus ``incr_many``), kept in a fixed-size hash
table that every worker maps into its memory. Importing this module registers
the ``shm`` scheme::

    shm:////dev/shm/twin-server-limits           (absolute path: four slashes)
    shm:///limits.shm                            (relative to the working directory)
    shm:////dev/shm/twin-server-limits?slots=262144

Layout: a 64-byte header (magic, slot count, and a 32-byte secret drawn at
random when the file is made), then ``slots`` slots of four unsigned 64-bit
words: the key's 128-bit BLAKE2b hash (two words; ``0, 0`` marks a
never-used slot), the window's end in microseconds since the epoch, and the
count. The hash is keyed with the table's secret (``blake2b(key=...)``):
every process of the machine that opens the file uses the same one, and a
visitor, who chooses session ids and (with IPv6) much of an address, cannot
compute where a counter lands, so cannot fill the slots around another's.
Two keys are told apart by their whole 128-bit hash, never by the slot they
land in (merged only if the hashes collide: odds about 2**-128 per pair). A
key lives in the first slot of its hash's home slot or the ``PROBES - 1``
slots after it (open addressing, linear probing); a slot whose window has
ended is reclaimed by the next new key whose probe passes it, and is never
emptied, so keys further along stay findable.

When all ``PROBES`` slots a new key may use hold live counters, the table
is full there, which a keyed hash makes a matter of size, not of aim. The
key is then counted by this process alone (a bounded dictionary beside the
table) until its window ends, and a WARNING says so (at most once a minute):
no chat is refused for it and no other key's count is pushed out, but with N
workers that key may allow up to N times its amount. The default 1,048,576
slots (32 MiB, mapped lazily) hold several hundred thousand live keys: two
per client address per day for the rate limit, two per session for the
session caps (kept ``TWIN_SESSION_TTL``), one per day for the budget.

Every read and read-modify-write holds an exclusive ``flock`` on the file
(one lock and unlock per call; ``incr_many`` counts every window under one)
and a per-object thread lock (``flock`` does not tell the threads of one
process apart). A ``flock`` belongs to an open file, which a fork would
share with the parent, so a forked child reopens the file (``os.register_at_fork``).
Nothing is written to disk on purpose (no ``msync``): the kernel writes the
pages back when it likes; after an OS crash some counts may be lost. The
file must be on a local file system (``/dev/shm`` or a tmpfs is ideal).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import heapq
import logging
import mmap
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs

from limits.errors import StorageError
from limits.storage import Storage

from twin_server.quotas.sqlite_storage import local_file

__all__ = ["DEFAULT_SLOTS", "PROBES", "SharedMemoryStorage"]

log = logging.getLogger(__name__)

MAGIC = b"twinshm2"
OLD_MAGICS = (b"twinshm1",)  # an unkeyed table: its layout could be aimed at
HEADER = 64  # bytes: magic, slot count, secret, room to spare; keeps the slots 8-byte aligned
WORDS = 4  # per slot: hash high, hash low, window end (microseconds since the epoch), count
SLOT = 8 * WORDS
DEFAULT_SLOTS = 1 << 20
#: How many slots, from a key's home slot on, the key may occupy.
PROBES = 64
SECRET_BYTES = 32
_HEADER = struct.Struct(f"<8sQ{SECRET_BYTES}s")
#: Keys counted by one process beside a full table, at most (the earliest windows to end go first).
SPILL_LIMIT = 65536
WARN_EVERY = 60.0  # seconds between two warnings about a full table, per process


def _digest(secret: bytes, key: str) -> tuple[int, int]:
    high, low = struct.unpack("<QQ", hashlib.blake2b(key.encode(), digest_size=16, key=secret).digest())
    if not high and not low:
        low = 1  # 0, 0 marks an empty slot
    return high, low


def _reopen_after_fork(ref: weakref.ref[SharedMemoryStorage]) -> None:
    storage = ref()
    if storage is not None:
        storage._after_fork()


class SharedMemoryStorage(Storage):
    """Fixed-window counters in a hash table in a memory-mapped file, locked with ``flock``."""

    STORAGE_SCHEME = ["shm"]

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        *,
        clock: Callable[[], float] = time.time,
        **options: float | str | bool,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path, query = local_file(uri, "shm")
        asked = parse_qs(query).get("slots")
        slots = int(asked[-1]) if asked else None
        if slots is not None and (slots < PROBES or slots & (slots - 1)):
            raise ValueError(f"slots must be a power of two of at least {PROBES}, not {slots}")
        self.clock = clock
        self._thread_lock = threading.Lock()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fds = [self._fd]  # every file this object opened (one more per fork), closed with it
        try:
            self.slots, self.secret = self._initialise(slots)
            self._map = mmap.mmap(self._fd, HEADER + self.slots * SLOT, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self._fd)
            raise
        self._words = memoryview(self._map)[HEADER:].cast("Q")
        self._mask = self.slots - 1
        self._hashes: dict[str, tuple[int, int]] = {}
        self._spill: dict[tuple[int, int], list[int]] = {}  # digest: [window end, count], this process only
        self._warn_after = 0.0
        os.register_at_fork(after_in_child=functools.partial(_reopen_after_fork, weakref.ref(self)))
        weakref.finalize(self, _close, self._words, self._map, self._fds)

    def _initialise(self, slots: int | None) -> tuple[int, bytes]:
        """Make the file's table if it is new (under the lock: workers start at once); its slot count and secret."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            head = os.pread(self._fd, _HEADER.size, 0)
            if not head:
                count, secret = slots or DEFAULT_SLOTS, os.urandom(SECRET_BYTES)
                os.ftruncate(self._fd, HEADER + count * SLOT)  # a sparse file of zeros: every slot empty
                os.pwrite(self._fd, _HEADER.pack(MAGIC, count, secret), 0)
                return count, secret
            magic, count, secret = _HEADER.unpack(head.ljust(_HEADER.size, b"\0"))
            if magic in OLD_MAGICS:
                raise ValueError(f"{self.path} is a counter table of an older twin-server; remove it (its counts are lost)")
            if magic != MAGIC or count < PROBES or count & (count - 1) or os.fstat(self._fd).st_size != HEADER + count * SLOT:
                raise ValueError(f"{self.path} is not a twin-server shm counter table")
            if slots is not None and slots != count:
                raise ValueError(f"{self.path} holds {count} slots, not the {slots} asked for; remove it to resize")
            return count, secret
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _after_fork(self) -> None:
        """In a forked child: an own open file (an inherited one would share the parent's flock), a fresh thread lock."""
        self._thread_lock = threading.Lock()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        self._fds.append(self._fd)
        self._spill = {}

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (OSError, ValueError)

    def _digest(self, key: str) -> tuple[int, int]:
        digest = self._hashes.get(key)
        if digest is None:
            if len(self._hashes) >= 4096:
                self._hashes.clear()
            digest = self._hashes[key] = _digest(self.secret, key)
        return digest

    def _find(self, high: int, low: int, now: int, insert: bool) -> int:
        """The first word of ``high, low``'s slot, or -1; with ``insert``, a free or ended slot is claimed for it.

        -1 with ``insert``: every slot the key may use holds a live counter.
        """
        words, mask = self._words, self._mask
        reusable = -1
        index = high & mask
        for _ in range(PROBES):
            base = index * WORDS
            slot_high, slot_low = words[base], words[base + 1]
            if slot_high == high and slot_low == low:
                return base
            if not slot_high and not slot_low:  # never used: the key is not further along
                if reusable < 0:
                    reusable = base
                break
            if reusable < 0 and words[base + 2] <= now:
                reusable = base
            index = (index + 1) & mask
        if not insert or reusable < 0:
            return -1
        words[reusable], words[reusable + 1], words[reusable + 2], words[reusable + 3] = high, low, 0, 0
        return reusable

    def _lock(self) -> None:
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def _unlock(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def incr_many(self, entries: Sequence[tuple[str, float]], amount: int = 1) -> list[int]:
        """Add ``amount`` to every ``(key, expiry)`` counter under one lock; their new values, in order."""
        try:
            now = self.clock()
            now_us = round(now * 1e6)
            digests = [(self._digest(key), round((now + expiry) * 1e6)) for key, expiry in entries]
            words, values, beside = self._words, [], False
            self._lock()
            try:
                for (high, low), ends in digests:
                    spilled = self._spill.get((high, low)) if self._spill else None
                    base = -1 if spilled and spilled[0] > now_us else self._find(high, low, now_us, insert=True)
                    if base < 0:
                        values.append(self._count_beside((high, low), ends, now_us, amount))
                        beside = True
                    elif words[base + 2] <= now_us:  # a new key, or its window has ended: a new window
                        words[base + 2], words[base + 3] = ends, amount
                        values.append(amount)
                    else:
                        value = words[base + 3] = words[base + 3] + amount
                        values.append(value)
            finally:
                self._unlock()
        except (OSError, ValueError) as exc:
            if self.wrap_exceptions:
                raise StorageError(exc) from exc
            raise
        if beside and now >= self._warn_after:  # logged outside the lock every process waits for
            self._warn_after = now + WARN_EVERY
            log.warning(
                "the shm counter table %s (%d slots) has no free slot near a new counter: %d counter(s) are kept "
                "by this process alone, so each worker allows their full amount; make the table bigger (?slots=)",
                self.path, self.slots, len(self._spill),
            )
        return values

    def _count_beside(self, digest: tuple[int, int], ends: int, now_us: int, amount: int) -> int:
        """Count a key that found no slot in this process's own dictionary (under the lock); its new value."""
        spill = self._spill
        entry = spill.get(digest)
        if entry is None or entry[0] <= now_us:
            if digest not in spill and len(spill) >= SPILL_LIMIT:
                for ended in [key for key, (end, _) in spill.items() if end <= now_us]:
                    del spill[ended]
                if len(spill) >= SPILL_LIMIT:  # an eighth at once, so a full dictionary is not searched per key
                    for early in heapq.nsmallest(SPILL_LIMIT // 8, spill, key=lambda key: spill[key][0]):
                        del spill[early]
            entry = spill[digest] = [ends, 0]
        entry[1] += amount
        return entry[1]

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return self.incr_many([(key, expiry)], amount)[0]

    def _live(self, key: str) -> tuple[int, int]:
        """``key``'s (window end in microseconds, count), or (0, 0) when it has none running."""
        high, low = self._digest(key)
        now_us = round(self.clock() * 1e6)
        self._lock()
        try:
            spilled = self._spill.get((high, low)) if self._spill else None
            if spilled and spilled[0] > now_us:  # where this process counts it (as ``incr_many`` does)
                return spilled[0], spilled[1]
            base = self._find(high, low, now_us, insert=False)
            if base < 0 or self._words[base + 2] <= now_us:
                return 0, 0
            return self._words[base + 2], self._words[base + 3]
        finally:
            self._unlock()

    def get(self, key: str) -> int:
        return self._live(key)[1]

    def get_expiry(self, key: str) -> float:
        now = self.clock()
        ends = self._live(key)[0]
        return ends / 1e6 if ends else now

    def check(self) -> bool:
        self._lock()
        try:
            return self._map[:8] == MAGIC
        finally:
            self._unlock()

    def reset(self) -> int:
        """Empty the whole table; how many live counters it held."""
        now_us = round(self.clock() * 1e6)
        self._lock()
        try:
            words = self._words
            live = sum(1 for base in range(0, len(words), WORDS) if (words[base] or words[base + 1]) and words[base + 2] > now_us)
            live += sum(1 for end, _ in self._spill.values() if end > now_us)
            self._spill.clear()
            # Shrink and regrow: the kernel frees the pages, every slot reads as zero again.
            # Safe: every other process touches the map only under the lock held here.
            os.ftruncate(self._fd, HEADER)
            os.ftruncate(self._fd, HEADER + self.slots * SLOT)
            return live
        finally:
            self._unlock()

    def clear(self, key: str) -> None:
        high, low = self._digest(key)
        self._lock()
        try:
            base = self._find(high, low, 0, insert=False)
            if base >= 0:
                self._words[base + 2] = self._words[base + 3] = 0  # ended: the slot is reused, never emptied
            self._spill.pop((high, low), None)
        finally:
            self._unlock()


def _close(words: memoryview, mapped: mmap.mmap, fds: list[int]) -> None:
    words.release()
    mapped.close()
    for fd in fds:
        try:
            os.close(fd)
        except OSError as exc:  # already closed (a fork's copy); nothing is left to release
            log.debug("closing counter file descriptor %d: %s", fd, exc)
