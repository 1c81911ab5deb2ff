"""Each session's newest messages, kept per process, so a returning visitor's turn parses only what is new.

A session file only grows: turns are appended, and the torn-tail repair cuts
only bytes after the last newline. So the messages before a given offset stay
what they were for as long as the file is the same file. A ``Tail`` remembers
the file's inode, the offset just past the last complete line parsed
(``end``), that line's bytes and the newest messages before ``end``. Before it
is used, one ``pread`` from the start of that last line to the end of the file
checks that the line is still there (a deleted and recreated file fails the
check, even on a reused inode) and brings in whatever other processes have
appended since, which is then the only JSON parsed. An append checks the same
line before it extends the tail with what it wrote (that read also stands in
for the torn-tail check). The check relies on what the store ever does to a
file (append, cut back to a line end, delete): a file started again after a
delete ends in a line of its own, with its own microsecond timestamp. A tail
read or written through a file the process still holds open (``Tail.file``)
needs no check: that inode cannot have been given to another file, so its size
alone says whether anything was appended.

The cache holds at most ``max_bytes`` of message text (least recently used
sessions go first), and never more than ``max_messages`` per session.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from datetime import timezone

from twin_server import Message

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_MESSAGES = 100
_OVERHEAD = 96  # bytes a cached message costs beyond its text, roughly


@dataclasses.dataclass(slots=True)
class Tail:
    """The newest messages of one session file, as of offset ``end``."""

    ino: int
    end: int
    last_line: bytes  # the line that ends at ``end`` (without its newline); b"" when end == 0
    messages: list[Message]
    whole: bool  # True when ``messages`` are all the messages before ``end``
    keep: int  # how many of the newest messages to keep
    cost: int = 0
    #: The open file (``twin_local.session_files``) this tail was last read or written through. While that file
    #: is still open and its path's, it ends at ``end`` exactly when nothing was appended: no check read is needed.
    file: object = None

    def extend(self, messages: list[Message], end: int, last_line: bytes) -> None:
        self.messages.extend(messages)
        self.end, self.last_line = end, last_line
        self.cost += _cost(messages)
        if len(self.messages) > self.keep:
            dropped = len(self.messages) - self.keep
            self.cost -= _cost(self.messages[:dropped])
            del self.messages[:dropped]
            self.whole = False

    def verify_from(self) -> int:
        """Where the bytes to read start: the beginning of ``last_line``."""
        return self.end - len(self.last_line) - 1 if self.end else 0

    def newer(self, data: bytes) -> bytes | None:
        """Given the bytes from ``verify_from()``, those after ``end``; None when the last line is not there."""
        if not self.end:
            return data
        expected = self.last_line + b"\n"
        return data[len(expected):] if data.startswith(expected) else None


def _cost(messages: list[Message]) -> int:
    return sum(len(m.content) for m in messages) + _OVERHEAD * len(messages)


def as_stored(message: Message) -> Message:
    """The message as a load would return it (timestamps come back in UTC)."""
    if message.timestamp.tzinfo is timezone.utc:
        return message
    return dataclasses.replace(message, timestamp=message.timestamp.astimezone(timezone.utc))


class TailCache:
    """Tails by session id, least recently used first; safe to share between threads."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.max_bytes, self.max_messages = max_bytes, max_messages
        self._tails: OrderedDict[str, Tail] = OrderedDict()
        self._lock = threading.Lock()
        self._cost = 0

    def __len__(self) -> int:
        return len(self._tails)

    def get(self, session_id: str) -> Tail | None:
        with self._lock:
            tail = self._tails.get(session_id)
            if tail is not None:
                self._tails.move_to_end(session_id)
            return tail

    def put(self, session_id: str, tail: Tail) -> None:
        """Keep ``tail`` (its cost already computed) for the session, evicting others over the budget."""
        with self._lock:
            old = self._tails.pop(session_id, None)
            if old is not None:
                self._cost -= old.cost
            if tail.cost > self.max_bytes:
                return
            self._tails[session_id] = tail
            self._cost += tail.cost
            while self._cost > self.max_bytes:
                _, evicted = self._tails.popitem(last=False)
                self._cost -= evicted.cost

    def changed(self, session_id: str, tail: Tail, old_cost: int) -> None:
        """``tail`` (still cached, or just evicted) was extended in place: account for its new cost."""
        with self._lock:
            if self._tails.get(session_id) is tail:
                self._cost += tail.cost - old_cost
                while self._cost > self.max_bytes and self._tails:
                    _, evicted = self._tails.popitem(last=False)
                    self._cost -= evicted.cost

    def drop(self, session_id: str) -> None:
        with self._lock:
            old = self._tails.pop(session_id, None)
            if old is not None:
                self._cost -= old.cost


class SummaryCache:
    """Each session's last read summary, by the file's (inode, mtime, size): a ``stat`` instead of a read.

    A summary is appended to the file (which grows) or the file is compacted into a new one
    renamed over it (a new inode), so any change of it changes the key. Holds at most ``max_entries``
    sessions, least recently used go first.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[tuple[int, int, int], object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str, key: tuple[int, int, int]) -> tuple[bool, object]:
        """(found, summary) for the file with ``key``."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None or entry[0] != key:
                return False, None
            self._entries.move_to_end(session_id)
            return True, entry[1]

    def put(self, session_id: str, key: tuple[int, int, int], summary: object) -> None:
        with self._lock:
            self._entries[session_id] = (key, summary)
            self._entries.move_to_end(session_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._entries.pop(session_id, None)
