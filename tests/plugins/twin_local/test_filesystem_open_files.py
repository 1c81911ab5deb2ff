"""The filesystem store keeps session files open between calls: what that saves, and what it must never cost."""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from twin_local import session_files, summaries
from twin_local.session_files import PER_STRIPE
from twin_local.storage import FilesystemStore
from twin_local.stripe_locks import stripe_of
from twin_server.testing import turn_problems
from twin_server.types import Message, Summary

SID = "session-0001"
SPIED = {os: ("open", "close", "stat", "fstat", "pread", "write", "getpid"), fcntl: ("flock",)}


@pytest.fixture
def store(tmp_path):
    return FilesystemStore(tmp_path / "data")


def turn(i):
    return [Message("user", f"question {i}"), Message("assistant", f"answer {i}")]


def contents(messages):
    return [m.content for m in messages]


@contextlib.contextmanager
def system_calls():
    """The os and fcntl calls made inside, by name."""
    made = collections.Counter()
    with pytest.MonkeyPatch.context() as patch:
        for module, names in SPIED.items():
            for name in names:
                real = getattr(module, name)
                spy = lambda *a, _real=real, _name=name, **k: made.update([_name]) or _real(*a, **k)  # noqa: E731
                patch.setattr(module, name, spy)
        yield made


def open_paths(store):
    """The files of ``store``'s directory this process holds open ("... (deleted)": unlinked while open)."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used is gone by now
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [path for path in paths if path.startswith(os.path.join(store.root, ""))]


def same_stripe(session_id, count):
    stripe = stripe_of(session_id)
    return [f"session-{n:06d}" for n in range(100_000) if stripe_of(f"session-{n:06d}") == stripe][:count]


def test_a_returning_load_with_nothing_new_is_one_stat(store):
    store.append(SID, turn(0))
    store.load(SID, 20)
    with system_calls() as made:
        assert contents(store.load(SID, 20)) == ["question 0", "answer 0"]
    assert made == {"stat": 1}


def test_a_returning_append_is_a_stat_and_the_write_under_the_lock(store):
    store.append(SID, turn(0))
    store.load(SID, 20)
    with system_calls() as made:
        store.append(SID, turn(1))
    assert made == {"flock": 2, "stat": 1, "write": 1}
    assert contents(FilesystemStore(store.root).load(SID)) == contents(turn(0) + turn(1))


def test_a_load_waits_for_a_turn_another_process_is_writing(store):
    """The file has grown since the tail was read: the load takes the lock, and never sees half of the turn."""
    store.append(SID, turn(0))
    store.load(SID, 20)
    user, assistant = (m.to_json_line() + b"\n" for m in turn(1))
    loaded = []
    with open(store.root / ".locks" / f"{stripe_of(SID)}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process appending: its first line is out, the second not yet
        with open(store.root / f"{SID}.jsonl", "ab") as session:
            session.write(user)
            session.flush()
            reader = threading.Thread(target=lambda: loaded.append(contents(store.load(SID, 20))))
            reader.start()
            time.sleep(0.2)
            assert loaded == []
            session.write(assistant)
    reader.join(timeout=5)
    assert loaded == [contents(turn(0) + turn(1))]


def test_a_whole_load_reads_to_the_end_of_a_turn_that_was_being_written_when_it_began(store, monkeypatch):
    """The size a load sees before it gets the lock may end half-way through another process's turn."""
    store.append(SID, turn(0))
    store.load(SID)  # its file is open now
    user, assistant = (m.to_json_line() + b"\n" for m in turn(1))
    waiting, real_flock, loaded = threading.Event(), fcntl.flock, []
    monkeypatch.setattr(fcntl, "flock", lambda fd, mode: waiting.set() or real_flock(fd, mode))
    with open(store.root / ".locks" / f"{stripe_of(SID)}.lock", "a+b") as lock:
        real_flock(lock, fcntl.LOCK_EX)  # another process appending: its first line is out, the second not yet
        with open(store.root / f"{SID}.jsonl", "ab") as session:
            session.write(user)
            session.flush()
            reader = threading.Thread(target=lambda: loaded.append(contents(store.load(SID))))
            reader.start()
            assert waiting.wait(timeout=10)  # the reader has seen the file's size and asks for the lock
            session.write(assistant)
    reader.join(timeout=10)
    assert loaded == [contents(turn(0) + turn(1))]


def test_a_session_deleted_and_started_again_by_another_worker_keeps_this_workers_turn(store):
    other = FilesystemStore(store.root)  # another worker
    store.append(SID, turn(0))
    store.load(SID, 20)  # this worker's file is open now
    other.delete(SID)
    other.append(SID, turn(7))
    store.append(SID, turn(8))
    assert contents(FilesystemStore(store.root).load(SID)) == contents(turn(7) + turn(8))
    assert contents(store.load(SID, 20)) == contents(turn(7) + turn(8))


@pytest.mark.parametrize("erase", ["delete", "sweep"])
def test_erasing_a_session_closes_its_files(store, erase):
    store.append(SID, turn(0))
    store.load(SID, 20)
    store.save_summary(SID, Summary("So far.", datetime(2024, 3, 1, tzinfo=timezone.utc), 2))
    assert sorted(os.path.basename(path) for path in open_paths(store) if SID in path) == [
        f"{SID}.jsonl", f"{SID}{summaries.SUFFIX}"]
    if erase == "delete":
        assert store.delete(SID)
    else:
        assert store.sweep(0, now=time.time() + 3600) == 1
    assert not [path for path in open_paths(store) if SID in path]  # its disk space is given back now


def test_a_file_deleted_by_another_worker_is_closed_once_unused(store, monkeypatch):
    store.append(SID, turn(0))
    FilesystemStore(store.root).delete(SID)
    assert [path for path in open_paths(store) if SID in path and path.endswith("(deleted)")]
    monkeypatch.setattr(session_files, "IDLE_SECONDS", 0.0)
    store._stripes.current().next_sweep = 0.0  # as if IDLE_SECONDS had gone by
    store.load("another-session", 20)
    assert not [path for path in open_paths(store) if SID in path]


def test_a_stripe_keeps_only_a_few_files_open(store):
    sessions = same_stripe(SID, 3 * PER_STRIPE)
    for n, session_id in enumerate(sessions):
        store.append(session_id, turn(n))
    assert len([path for path in open_paths(store) if path.endswith(".jsonl")]) == PER_STRIPE
    for n, session_id in enumerate(sessions):
        assert contents(store.load(session_id, 20)) == contents(turn(n))


def test_a_data_directory_this_process_may_only_read_still_loads(store, monkeypatch):
    store.append(SID, turn(0))
    real_open = os.open

    def read_only(path, flags, *args):
        if os.fspath(path).endswith(".jsonl") and flags & os.O_ACCMODE != os.O_RDONLY:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    assert contents(FilesystemStore(store.root).load(SID, 20)) == contents(turn(0))
    reader = FilesystemStore(store.root)
    assert contents(reader.load(SID)) == contents(turn(0))
    monkeypatch.setattr(os, "open", real_open)
    reader.append(SID, turn(1))  # the file it read through was opened read-only: this one is opened to write
    assert contents(FilesystemStore(store.root).load(SID)) == contents(turn(0) + turn(1))


def test_calls_do_not_ask_for_the_process_id(store):
    store.append(SID, turn(0))
    store.save_summary(SID, Summary("So far.", datetime(2024, 3, 1, tzinfo=timezone.utc), 2))
    with system_calls() as made:
        store.load(SID, 20)
        store.append(SID, turn(1))
        store.load_summary(SID)
    assert made["getpid"] == 0


def test_a_summary_this_process_saved_is_not_read_back(store, monkeypatch):
    reads = []
    real = summaries.load
    monkeypatch.setattr(summaries, "load", lambda path, sid: reads.append(sid) or real(path, sid))
    lisbon = timezone(timedelta(hours=1))
    at = datetime(2024, 3, 1, 9, 30, tzinfo=lisbon)
    saved = Summary("Asked about boats.", at, 6, at)
    store.append(SID, turn(0))
    store.save_summary(SID, saved)
    loaded = store.load_summary(SID)
    assert reads == []
    fresh = FilesystemStore(store.root).load_summary(SID)
    assert loaded == fresh == saved
    assert loaded.through.tzinfo == fresh.through.tzinfo == timezone.utc  # as a read gives it back
    FilesystemStore(store.root).save_summary(SID, Summary("Another worker's.", saved.through, 8))
    assert store.load_summary(SID).text == "Another worker's."


def test_a_summary_saved_after_this_process_own_is_appended_without_a_check_read(store):
    at = datetime(2024, 3, 1, tzinfo=timezone.utc)
    store.append(SID, turn(0))
    store.save_summary(SID, Summary("First.", at, 2))
    with system_calls() as made:
        store.save_summary(SID, Summary("Second.", at, 4))
    assert made == {"flock": 2, "stat": 2, "write": 1, "fstat": 1}  # the session is there; the summary file is ours
    assert FilesystemStore(store.root).load_summary(SID).text == "Second."


def test_a_compacted_summary_file_is_not_kept_open(store, monkeypatch):
    monkeypatch.setattr(summaries, "COMPACT_BYTES", 600)
    at = datetime(2024, 3, 1, tzinfo=timezone.utc)
    store.append(SID, turn(0))
    path = store.root / f"{SID}{summaries.SUFFIX}"
    sizes = [0]
    while sizes[-1] >= sizes[-2:][0] and len(sizes) < 20:  # until a save compacts it (renames a new file over it)
        store.save_summary(SID, Summary(f"Summary {len(sizes)} " + "x" * 100, at, 2 * len(sizes)))
        sizes.append(path.stat().st_size)
    assert sizes[-1] < sizes[-2]
    assert not [p for p in open_paths(store) if p.endswith("(deleted)")]
    assert FilesystemStore(store.root).load_summary(SID).text.startswith(f"Summary {len(sizes) - 1} ")


RETURNING_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from twin_local.storage import FilesystemStore
    from twin_server.types import Message

    root, sid, worker, turns, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    store = FilesystemStore(Path(root))
    store.load(sid, 20)  # its file open and its tail cached before the others write
    while not go.exists():
        time.sleep(0.002)
    with open(go.parent / f"seen-{worker}", "w") as seen:
        for t in range(turns):
            seen.write(json.dumps([m.content for m in store.load(sid, 20)]) + "\\n")
            time.sleep(0.001)  # the LLM answering: the others append meanwhile
            store.append(sid, [Message("user", f"w{worker}-t{t}-q"), Message("assistant", f"w{worker}-t{t}-a")])
    """
)


def test_workers_taking_turns_on_one_session_lose_nothing_and_load_what_was_there(store, tmp_path):
    """Processes each loading and appending, as gunicorn's workers do for a returning visitor: every load
    gives the newest messages as they stood at some moment (a run of the final file, whole turns)."""
    workers, turns = 4, 60
    store.append(SID, [Message("user", "w9-t0-q"), Message("assistant", "w9-t0-a")])
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RETURNING_WORKER, str(store.root), SID, str(w), str(turns),
                               str(go)]) for w in range(workers)]
    time.sleep(0.5)
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0] * workers
    final = contents(FilesystemStore(store.root).load(SID))
    assert turn_problems([Message("user", c) for c in final[2:]], workers, turns) == []
    windows = {tuple(final[i:j]) for j in range(2, len(final) + 1, 2) for i in (max(0, j - 20),)}
    for worker in range(workers):
        for line in (tmp_path / f"seen-{worker}").read_text().splitlines():
            assert tuple(json.loads(line)) in windows, f"worker {worker} loaded {line}"
    assert store.load(SID, 20) == FilesystemStore(store.root).load(SID, 20)  # this process's cached tail caught up
