"""The filesystem store's per-process tail cache: a returning visitor's load parses only what is new."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta, timezone

import pytest

from twin_local import session_lines
from twin_local.storage import FilesystemStore
from twin_local.session_files import PER_STRIPE
from twin_local.stripe_locks import stripe_of
from twin_local.tail_cache import Tail, TailCache
from twin_server.types import Message, Source

SID = "session-0001"


@pytest.fixture
def store(tmp_path):
    return FilesystemStore(tmp_path / "data")


@pytest.fixture
def parsed(monkeypatch):
    """Every stored line the store parses."""
    lines = []
    real = session_lines.parse

    def counting(line, session_id, offset):
        lines.append(line)
        return real(line, session_id, offset)

    monkeypatch.setattr(session_lines, "parse", counting)
    return lines


def turn(i):
    return [Message("user", f"question {i}"), Message("assistant", f"answer {i}")]


def contents(messages):
    return [m.content for m in messages]


def test_a_returning_load_parses_nothing_it_has_seen(store, parsed):
    for i in range(15):
        store.append(SID, turn(i))
    assert len(store.load(SID, 20)) == 20  # the first load reads the file
    parsed.clear()
    for i in range(15, 25):
        assert contents(store.load(SID, 20))[-2:] == [f"question {i - 1}", f"answer {i - 1}"]
        store.append(SID, turn(i))
    assert parsed == []


def test_lines_appended_by_another_process_are_the_only_ones_parsed(store, parsed, tmp_path):
    other = FilesystemStore(store.root)  # its own cache, as another worker has
    for i in range(10):
        store.append(SID, turn(i))
    store.load(SID, 20)
    other.append(SID, turn(10))
    parsed.clear()
    assert contents(store.load(SID, 20))[-2:] == ["question 10", "answer 10"]
    assert len(parsed) == 2


def test_a_file_rewritten_in_place_is_not_served_from_the_cache(store):
    """Same inode, longer than before, other content: the last-line check notices."""
    for i in range(3):
        store.append(SID, turn(i))
    assert contents(store.load(SID, 20))[0] == "question 0"
    path = store.root / f"{SID}.jsonl"
    ino = path.stat().st_ino
    fresh = b"".join(m.to_json_line() + b"\n" for i in range(100, 110) for m in turn(i))
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, fresh)
    os.close(fd)
    assert path.stat().st_ino == ino
    assert contents(store.load(SID, 20)) == contents(m for i in range(100, 110) for m in turn(i))


def test_a_session_deleted_elsewhere_and_started_again(store):
    other = FilesystemStore(store.root)
    store.append(SID, turn(0))
    store.load(SID, 20)
    other.delete(SID)
    assert store.load(SID, 20) == []
    other.append(SID, turn(7))
    assert contents(store.load(SID, 20)) == ["question 7", "answer 7"]


def test_a_torn_line_from_another_writer_is_left_out_until_it_is_complete(store):
    store.append(SID, turn(0))
    store.load(SID, 20)
    line = Message("user", "late question").to_json_line() + b"\n"
    with open(store.root / f"{SID}.jsonl", "ab") as fh:
        fh.write(line[:10])
    assert contents(store.load(SID, 20)) == ["question 0", "answer 0"]
    with open(store.root / f"{SID}.jsonl", "ab") as fh:
        fh.write(line[10:])
    assert contents(store.load(SID, 20)) == ["question 0", "answer 0", "late question"]


def test_cached_messages_come_back_as_a_fresh_read_gives_them(store):
    lisbon = timezone(timedelta(hours=1))
    stamp = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=lisbon)
    store.append(SID, [Message("user", "hello", stamp),
                       Message("assistant", "cut", stamp, complete=False, sources=(Source("career-1", "Career"),))])
    cached, fresh = store.load(SID, 20), FilesystemStore(store.root).load(SID, 20)
    assert cached == fresh and cached[1].sources == (Source("career-1", "Career"),)
    assert [m.timestamp.tzinfo for m in cached] == [m.timestamp.tzinfo for m in fresh] == [timezone.utc] * 2


def test_random_operations_agree_with_a_fresh_read(store):
    """Two stores (two workers) appending, deleting and tearing lines; every load matches an uncached read."""
    rng = random.Random(2024)
    other = FilesystemStore(store.root)
    path = store.root / f"{SID}.jsonl"
    for step in range(400):
        actor = rng.choice((store, other))
        action = rng.random()
        if action < 0.45:
            actor.append(SID, turn(step)[: rng.choice((1, 2))])
        elif action < 0.5:
            actor.delete(SID)
        elif action < 0.53 and path.exists():
            with open(path, "ab") as fh:  # a writer that died mid-line
                fh.write(b'{"role": "user", "cont')
        else:
            limit = rng.choice((1, 2, 5, 20))
            assert actor.load(SID, limit) == FilesystemStore(store.root).load(SID, limit), step


def test_the_cache_keeps_to_its_byte_budget():
    cache = TailCache(max_bytes=1000)
    for i in range(20):
        tail = Tail(ino=i, end=0, last_line=b"", messages=[], whole=True, keep=10)
        tail.extend([Message("user", "x" * 100)], 110, b"line")
        cache.put(f"session-{i:04d}", tail)
    assert 0 < len(cache) <= 1000 // 100
    assert cache.get("session-0019") is not None and cache.get("session-0000") is None
    assert sum(t.cost for t in cache._tails.values()) <= 1000


def test_a_tail_keeps_only_its_newest_messages():
    tail = Tail(ino=1, end=0, last_line=b"", messages=[], whole=True, keep=3)
    tail.extend([Message("user", str(i)) for i in range(5)], 50, b"4")
    assert contents(tail.messages) == ["2", "3", "4"] and not tail.whole


def same_stripe(session_id, count):
    """``count`` other session ids on ``session_id``'s lock stripe."""
    stripe = stripe_of(session_id)
    return [f"session-{n:06d}" for n in range(100_000) if stripe_of(f"session-{n:06d}") == stripe][:count]


def test_an_append_after_a_same_size_rewrite_does_not_revive_the_old_messages(store):
    """Same inode and size as the cached tail, other lines: a file deleted and started again on a reused inode
    (possible once this process has closed the file it held open: it holds only a few)."""
    for i in range(3):
        store.append(SID, turn(i))
    store.load(SID, 20)
    for other in same_stripe(SID, PER_STRIPE):
        store.append(other, turn(0))  # SID's file is closed; its cached tail stays
    path = store.root / f"{SID}.jsonl"
    rewritten = path.read_bytes().replace(b"question", b"QUESTION").replace(b"answer", b"ANSWER")
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, rewritten)
    os.close(fd)
    store.append(SID, turn(3))
    assert contents(store.load(SID, 20)) == contents(FilesystemStore(store.root).load(SID, 20))
    assert contents(store.load(SID, 20))[0] == "QUESTION 0"


def test_a_summary_is_read_once_until_its_file_changes(store, monkeypatch):
    from datetime import datetime, timezone

    from twin_local import summaries
    from twin_server.types import Summary

    reads = []
    real = summaries.load
    monkeypatch.setattr(summaries, "load", lambda path, sid: reads.append(sid) or real(path, sid))
    other = FilesystemStore(store.root)  # another worker
    at = datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc)
    store.append(SID, turn(0))
    other.save_summary(SID, Summary("First summary.", at, 2, at))
    assert [store.load_summary(SID).text for _ in range(5)] == ["First summary."] * 5
    assert len(reads) == 1
    other.save_summary(SID, Summary("Second summary.", at, 4, at))
    assert store.load_summary(SID).text == "Second summary." and len(reads) == 2
    other.delete(SID)
    assert store.load_summary(SID) is None
