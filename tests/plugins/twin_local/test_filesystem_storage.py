"""The filesystem conversation store (plugins/twin_local/storage.py)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from twin_local import session_lines, storage
from twin_local.storage import FilesystemStore
from twin_server import ConversationStore
from twin_server.testing import turn_problems
from twin_server.errors import BackendUnavailable, ValidationError
from twin_server.types import Message

SID = "session-0001"


@pytest.fixture
def store(tmp_path):
    return FilesystemStore(tmp_path / "data")


def data_file(store, session_id=SID):
    return store.root / f"{session_id}.jsonl"


def msg(content, role="user", **kw):
    return Message(role=role, content=content, **kw)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- basics ---------------------------------------------------------------------


def test_is_a_conversation_store(store):
    assert isinstance(store, ConversationStore)


def test_from_config_uses_data_dir_and_creates_it(tmp_path):
    store = FilesystemStore.from_config({"DATA_DIR": str(tmp_path / "a" / "b")})
    assert store.root == tmp_path / "a" / "b"
    assert store.root.is_dir()


def test_from_config_defaults_to_data_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = FilesystemStore.from_config({})
    assert store.root == tmp_path / "data"
    assert store.root.is_dir()


def test_round_trip_keeps_timestamps_completeness_and_unicode(store):
    paris = timezone(timedelta(hours=2))
    turn = [
        msg("héllo 🌍\nsecond line", timestamp=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=paris)),
        msg("cut sh", role="assistant", complete=False, timestamp=datetime(2024, 5, 1, 10, 31, tzinfo=timezone.utc)),
    ]
    store.append(SID, turn)
    loaded = store.load(SID)
    assert loaded == turn
    assert loaded[1].complete is False
    assert loaded[0].timestamp == turn[0].timestamp

    raw = data_file(store).read_bytes()
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3  # one record per line, newline-terminated
    assert "héllo 🌍".encode() in raw  # UTF-8, not \u escapes
    assert b'", "' not in raw and b'": ' not in raw  # compact separators
    assert json.loads(lines[1]) == turn[1].to_dict()


def test_missing_session_loads_empty_and_empty_append_creates_nothing(store):
    assert store.load(SID) == []
    assert store.load(SID, limit=5) == []
    store.append(SID, [])
    assert not data_file(store).exists()


def test_a_negative_limit_is_a_programming_error(store):
    # Order, limits 0/1/N/more and None are the store contract's (tests/plugins/twin_local/test_local_contracts.py).
    with pytest.raises(ValueError):
        store.load(SID, limit=-1)


@pytest.mark.parametrize("block", [1, 2, 7, 64, 1000])
def test_backward_reading_across_block_boundaries(store, monkeypatch, block):
    monkeypatch.setattr(session_lines, "BLOCK_SIZE", block)
    expected = [f"m{i}" + "x" * (i % 13) for i in range(40)]
    store.append(SID, [msg(c) for c in expected])
    with data_file(store).open("ab") as f:
        f.write(b'{"role":"user","con')  # torn tail
    assert [m.content for m in store.load(SID)] == expected
    for limit in (1, 5, 39, 40, 41):
        assert [m.content for m in store.load(SID, limit=limit)] == expected[-limit:]


def test_lock_files_are_striped_not_per_session(store):
    for i in range(200):
        store.append(f"session-{i:04d}", [msg("x")])
    locks = list((store.root / ".locks").iterdir())
    assert 0 < len(locks) <= storage.LOCK_STRIPES
    assert all(p.name.endswith(".lock") and p.stem.isdigit() for p in locks)


# -- one write per turn, failures --------------------------------------------------


def test_append_is_one_write(store, monkeypatch):
    calls = []
    real_write = os.write

    def spy(fd, data):
        calls.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    store.append(SID, [msg("a"), msg("b", role="assistant"), msg("c")])
    assert len(calls) == 1
    assert calls[0] == data_file(store).stat().st_size


def test_short_write_is_completed(store, monkeypatch):
    real_write = os.write
    calls = []

    def short(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:5]))

    monkeypatch.setattr(os, "write", short)
    store.append(SID, [msg("first"), msg("second", role="assistant")])
    monkeypatch.undo()
    assert len(calls) > 1
    assert [m.content for m in store.load(SID)] == ["first", "second"]


def test_enospc_becomes_backend_unavailable_and_file_is_unchanged(store, monkeypatch):
    store.append(SID, [msg("kept")])
    before = data_file(store).read_bytes()

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(BackendUnavailable) as info:
        store.append(SID, [msg("lost"), msg("lost too", role="assistant")])
    assert isinstance(info.value.__cause__, OSError)
    assert "ENOSPC" in str(info.value)
    monkeypatch.undo()
    assert data_file(store).read_bytes() == before


def test_failed_follow_up_write_truncates_back_to_original_size(store, monkeypatch):
    store.append(SID, [msg("kept")])
    before = data_file(store).read_bytes()
    real_write = os.write
    calls = []

    def short_then_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2 + 3]))  # past the first newline
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(BackendUnavailable):
        store.append(SID, [msg("one"), msg("two", role="assistant")])
    monkeypatch.undo()
    assert len(calls) == 2
    assert data_file(store).read_bytes() == before
    assert [m.content for m in store.load(SID)] == ["kept"]


def test_read_error_becomes_backend_unavailable(store, monkeypatch):
    store.append(SID, [msg("x")])

    def broken(fd, n, offset):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "pread", broken)
    with pytest.raises(BackendUnavailable):
        store.load(SID)


def test_unencodable_content_is_rejected_before_touching_files(store):
    with pytest.raises(ValidationError):
        store.append(SID, [msg("ok"), msg("bad \ud800")])
    assert not data_file(store).exists()


# -- session id validation ----------------------------------------------------------

HOSTILE = [
    "../x", "../../etc/passwd", "a/b", "abcdefgh/../../x", "abc\x00defgh", "x" * 1000, "x" * 129,
    "short", "", "sessión-01", "ｓｅｓｓｉｏｎ１２３", "abcdefgh\n", "abc defgh", ".hidden-file",
    "..........", None, 12345678,
]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_session_ids_touch_no_file(store, bad):
    store.append(SID, [msg("x")])
    before = tree(store.root.parent)
    with pytest.raises(ValidationError):
        store.load(bad)
    with pytest.raises(ValidationError):
        store.load(bad, limit=3)
    with pytest.raises(ValidationError):
        store.append(bad, [msg("x")])
    with pytest.raises(ValidationError):
        store.delete(bad)
    assert tree(store.root.parent) == before


@pytest.mark.parametrize("good", ["a" * 8, "Z" * 128, "abc_DEF-123", "--------"])
def test_boundary_session_ids_are_accepted(store, good):
    store.append(good, [msg("x")])
    assert len(store.load(good)) == 1


# -- torn and corrupt records -----------------------------------------------------------


def test_torn_last_line_is_ignored_then_repaired_by_next_append(store, caplog):
    store.append(SID, [msg("one"), msg("two", role="assistant")])
    good = data_file(store).read_bytes()
    with data_file(store).open("ab") as f:
        f.write(b'{"role":"user","content":"half a rec')
    with caplog.at_level(logging.WARNING, logger="twin_local.storage"):
        assert [m.content for m in store.load(SID)] == ["one", "two"]
        assert [m.content for m in store.load(SID, limit=1)] == ["two"]
    assert caplog.records == []  # a torn tail is expected after a crash, not corruption

    with caplog.at_level(logging.WARNING, logger="twin_local.storage"):
        store.append(SID, [msg("three")])
    raw = data_file(store).read_bytes()
    assert raw.startswith(good) and b"half a rec" not in raw
    assert raw.count(b"\n") == 3 and raw.endswith(b"\n")
    assert [m.content for m in store.load(SID)] == ["one", "two", "three"]
    assert "torn" in caplog.text and "half a rec" not in caplog.text


def test_torn_line_longer_than_a_block_is_repaired(store, monkeypatch):
    monkeypatch.setattr(session_lines, "BLOCK_SIZE", 16)
    store.append(SID, [msg("one")])
    with data_file(store).open("ab") as f:
        f.write(b"x" * 100)
    assert [m.content for m in store.load(SID)] == ["one"]
    store.append(SID, [msg("two")])
    assert [m.content for m in store.load(SID)] == ["one", "two"]


def test_file_with_only_a_torn_line(store):
    data_file(store).write_bytes(b'{"role":"us')
    assert store.load(SID) == []
    store.append(SID, [msg("fresh")])
    assert data_file(store).read_bytes().count(b"\n") == 1
    assert [m.content for m in store.load(SID)] == ["fresh"]


def test_corrupt_records_are_skipped_and_logged_without_content(store, caplog):
    good = lambda c: json.dumps(msg(c).to_dict()).encode()  # noqa: E731
    data_file(store).write_bytes(b"\n".join([
        good("m1"),
        b"not json SECRET-1",
        good("m2"),
        b'{"role":"robot","content":"SECRET-2","timestamp":"2024-01-01T00:00:00Z"}',
        b'["SECRET-3"]',
        b'{"role":"user","content":"SECRET-4"}',
        b"\xff\xfe SECRET-5",
        good("m3"),
        good("m4"),
    ]) + b"\n")
    with caplog.at_level(logging.WARNING, logger="twin_local.storage"):
        assert [m.content for m in store.load(SID)] == ["m1", "m2", "m3", "m4"]
    records = [r for r in caplog.records if r.name == "twin_local.storage"]
    assert len(records) == 5
    assert all(r.levelno == logging.WARNING and SID in r.getMessage() for r in records)
    assert "offset" in caplog.text and "SECRET" not in caplog.text

    # A corrupt line inside the tail costs one more line of reading, not a short answer.
    caplog.clear()
    assert [m.content for m in store.load(SID, limit=3)] == ["m2", "m3", "m4"]


# -- tail reading is cheap ---------------------------------------------------------------


def test_tail_read_at_10000_messages_reads_a_small_fraction(store, monkeypatch):
    store.append(SID, [msg(f"message number {i} " + "lorem ipsum " * 8) for i in range(10_000)])
    size = data_file(store).stat().st_size
    read = []
    real_pread = os.pread
    real_read = os.read

    def pread_spy(fd, n, offset):
        data = real_pread(fd, n, offset)
        read.append(len(data))
        return data

    def read_spy(fd, n):
        data = real_read(fd, n)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", pread_spy)
    monkeypatch.setattr(os, "read", read_spy)
    tail = FilesystemStore(store.root).load(SID, limit=20)  # another worker's: no cached tail to start from
    assert [m.content.split(" ")[2] for m in tail] == [str(i) for i in range(9_980, 10_000)]
    assert size > 1_000_000
    assert 0 < sum(read) <= session_lines.BLOCK_SIZE + 1 < size // 10

    read.clear()
    assert len(FilesystemStore(store.root).load(SID)) == 10_000  # the spy does see a full read
    assert sum(read) >= size


# -- concurrency (the contract has loss, split turns and order from threads; here, processes and locks) ---------------------------------------------------------------------------


def turn(worker, t):
    return [msg(f"w{worker}-t{t}-q"), msg(f"w{worker}-t{t}-a", role="assistant")]


def test_unlocked_line_by_line_appends_would_be_caught(store):
    """What the checker sees if two writers' lines interleave (the bug the lock prevents)."""
    path = data_file(store)
    with path.open("ab") as f:
        for line_w0, line_w1 in zip(turn(0, 0), turn(1, 0)):
            for m in (line_w0, line_w1):
                f.write(json.dumps(m.to_dict()).encode() + b"\n")
    assert turn_problems(store.load(SID), 2, 1)


def test_append_and_delete_wait_for_the_sessions_stripe_lock(store):
    stripe = zlib.crc32(SID.encode()) % storage.LOCK_STRIPES
    done = []
    with open(store.root / ".locks" / f"{stripe}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        workers = [
            threading.Thread(target=lambda: (store.append(SID, [msg("x")]), done.append("append"))),
            threading.Thread(target=lambda: done.append(store.delete("other-session"))),
        ]
        for th in workers:
            th.start()
        time.sleep(0.2)
        assert done == [False]  # another stripe is not held up; ours is
        assert not data_file(store).exists()
    for th in workers:
        th.join(timeout=5)
    assert done == [False, "append"]
    assert [m.content for m in store.load(SID)] == ["x"]


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from twin_local.storage import FilesystemStore
    from twin_server.types import Message

    root, sid, worker, turns, sync = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    store = FilesystemStore(Path(root))
    (sync / f"ready-{worker}").touch()
    deadline = time.monotonic() + 20
    while not (sync / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    for t in range(turns):
        store.append(sid, [
            Message("user", f"w{worker}-t{t}-q"),
            Message("assistant", f"w{worker}-t{t}-a"),
        ])
    """
)


def test_concurrent_appends_from_processes(store, tmp_path):
    workers, turns = 4, 50
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(store.root), SID, str(w), str(turns), str(sync)])
        for w in range(workers)
    ]
    deadline = time.monotonic() + 20
    while len(list(sync.glob("ready-*"))) < workers and time.monotonic() < deadline:
        time.sleep(0.005)
    (sync / "go").touch()
    assert [p.wait(timeout=30) for p in procs] == [0] * workers
    messages = store.load(SID)
    assert len(messages) == 400
    assert turn_problems(messages, workers, turns) == []


def test_lock_files_stay_open_across_calls(store):
    """One open per stripe for the process's life, not one per call."""
    opened = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    store.append(SID, [msg("warm")])  # opens the stripe once
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage.os, "open", counting_open)
        for i in range(5):
            store.append(SID, [msg(f"m{i}")])
            store.load(SID, 2)
    assert not [path for path in opened if path.endswith(".lock")]
    assert len(store.load(SID)) == 6


def test_a_forked_child_locks_against_its_parent(store):
    """After a fork the child opens its own lock files: sharing the parent's would share its flocks."""
    store.append(SID, [msg("before the fork")])  # the parent's stripe file is open now
    pid = None
    try:
        with store._lock(SID, fcntl.LOCK_EX):  # held by the parent (thread lock and flock) across the fork
            pid = os.fork()
            if pid == 0:  # the child: must wait for the parent's flock, and not deadlock on the copied thread lock
                try:
                    store.append(SID, [msg("from the child")])
                finally:
                    os._exit(0)
            time.sleep(0.3)
            assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the child wrote while the parent held the lock"
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            assert time.monotonic() < deadline, "the child never got the lock"
            time.sleep(0.01)
        pid = None
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    assert [m.content for m in store.load(SID)] == ["before the fork", "from the child"]
