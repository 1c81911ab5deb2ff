"""A session file's lines: read from the end, cut back when torn, and the cached tail kept in step with them.

The filesystem store (``twin_local.storage``) calls these with the session's
stripe held: a shared ``flock`` to read, an exclusive one to repair or append.
Readers trust only the bytes up to the last newline. Lines are read backwards
in ``BLOCK_SIZE`` blocks, so a load of the last few messages reads a small
part of a long file, and a returning session's load parses only what other
processes appended since its tail (``twin_local.tail_cache``) was read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

from twin_local.session_files import SessionFile
from twin_local.tail_cache import Tail, TailCache, as_stored
from twin_server import Message

__all__ = ["BLOCK_SIZE", "catch_up", "ends_as_cached", "read_newest", "remember", "repair"]

log = logging.getLogger("twin_local.storage")  # the store's logger: its warnings are the store's

BLOCK_SIZE = 64 * 1024


def parse(line: bytes, session_id: str, offset: int) -> Message | None:
    """One stored record, or None (logged) when it is corrupt."""
    if not line.strip():
        return None
    try:
        return Message.from_json_line(line)
    except ValueError as exc:
        # Never log the line itself: it is somebody's conversation.
        log.warning(
            "skipping corrupt record in session %s at byte offset %d (%s)",
            session_id, offset, type(exc.__cause__ or exc).__name__,
        )
        return None


def complete_end(fd: int, size: int) -> int:
    """The offset just after the last newline: bytes beyond it are a torn write."""
    if size and os.pread(fd, 1, size - 1) == b"\n":
        return size
    pos = size
    while pos > 0:
        start = max(0, pos - BLOCK_SIZE)
        newline = os.pread(fd, pos - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        pos = start
    return 0


def lines_backwards(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each line in ``[0, end)``, last first, reading blocks from the end."""
    pos = end
    buf = b""  # bytes [pos, pos + len(buf)); ends with the newline of a line whose start is unknown
    while pos > 0:
        start = max(0, pos - BLOCK_SIZE)
        buf = os.pread(fd, pos - start, start) + buf
        pos = start
        stop = len(buf) - 1
        newline = buf.rfind(b"\n", 0, stop)
        while newline >= 0:
            yield pos + newline + 1, buf[newline + 1 : stop]
            stop = newline
            newline = buf.rfind(b"\n", 0, stop)
        buf = buf[: stop + 1]
    if buf:
        yield 0, buf[:-1]


def repair(fd: int, session_id: str, size: int) -> int:
    """Cut off a torn last line (never acknowledged to anyone); return the file's new size."""
    end = complete_end(fd, size)
    if end != size:
        os.ftruncate(fd, end)
        log.warning("discarded a torn record (%d bytes) at the end of session %s", size - end, session_id)
    return end


def read_newest(file: SessionFile, st: os.stat_result | None, session_id: str, cached: int | None, limit: int | None,
                tails: TailCache) -> list[Message]:
    """The last ``limit`` messages (all for None), from the tail when ``cached``; ``st`` None: not known yet."""
    fd = file.fd
    if cached is not None:
        tail = tails.get(session_id)
        if tail is not None and catch_up(file, tail, session_id, tails):
            if len(tail.messages) >= cached or tail.whole:
                return tail.messages[-cached:]
    if st is None:
        st = os.fstat(fd)
    newest_first: list[Message] = []
    end = complete_end(fd, st.st_size)
    last_line, reached_start = b"", True
    # Lines are parsed newest first, so a corrupt line inside the tail
    # makes us read one more line rather than return fewer than limit.
    for offset, line in lines_backwards(fd, end):
        if offset + len(line) + 1 == end:
            last_line = line
        message = parse(line, session_id, offset)
        if message is not None:
            newest_first.append(message)
            if len(newest_first) == limit:
                reached_start = offset == 0
                break
    newest_first.reverse()
    if cached is not None:
        tail = Tail(file.ino, end, last_line, [], reached_start, cached, file=file)
        tail.extend(newest_first, end, last_line)
        tails.put(session_id, tail)
    return newest_first


def ends_as_cached(file: SessionFile, st: os.stat_result, tail: Tail) -> bool:
    """True when the file is the tail's and ends exactly at its last line (one ``pread``, unless read through
    this same open file: then it cannot have been replaced, and its size says that nothing was appended)."""
    if file.ino != tail.ino or st.st_size != tail.end:
        return False
    if tail.file is file:
        return True
    start = tail.verify_from()
    return tail.newer(os.pread(file.fd, tail.end - start, start)) == b""


def catch_up(file: SessionFile, tail: Tail, session_id: str, tails: TailCache) -> bool:
    """Bring ``tail`` up to the file's last complete line; False (and dropped) when it is not this file's."""
    if file.ino != tail.ino:
        tails.drop(session_id)
        return False
    start = tail.verify_from()
    newer = tail.newer(pread_to_end(file.fd, start, tail.end + BLOCK_SIZE))
    if newer is None:  # shorter than the tail, or its last line is not there: another file on a reused inode
        tails.drop(session_id)
        return False
    tail.file = file
    cut = newer.rfind(b"\n") + 1
    if cut:
        lines = newer[: cut - 1].split(b"\n")
        offset, parsed = tail.end, []
        for line in lines:
            message = parse(line, session_id, offset)
            if message is not None:
                parsed.append(message)
            offset += len(line) + 1
        old_cost = tail.cost
        tail.extend(parsed, tail.end + cut, lines[-1])
        tails.changed(session_id, tail, old_cost)
    return True


def pread_to_end(fd: int, start: int, guess: int) -> bytes:
    """The bytes from ``start`` to the end of the file, without an ``fstat``: reads until one comes back short."""
    chunks, want = [], max(guess - start, 1)
    while True:
        chunk = os.pread(fd, want, start)
        chunks.append(chunk)
        if len(chunk) < want:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        start += len(chunk)
        want *= 2


def remember(tails: TailCache, session_id: str, file: SessionFile, size: int, data: bytes,
             messages: Sequence[Message], tail: Tail | None) -> None:
    """After an append at ``size``: extend the tail checked before it, or start one for a new file."""
    end, last_line = size + len(data), data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]
    stored = [as_stored(m) for m in messages]
    if tail is not None:
        old_cost = tail.cost
        tail.extend(stored, end, last_line)
        tail.file = file
        tails.changed(session_id, tail, old_cost)
    elif size == 0:
        tail = Tail(file.ino, 0, b"", [], True, tails.max_messages, file=file)
        tail.extend(stored, end, last_line)
        tails.put(session_id, tail)
