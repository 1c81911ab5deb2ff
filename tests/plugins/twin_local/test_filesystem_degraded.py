"""The filesystem store where the system says no: a data directory it may only read (loads work, writes fail
loudly), a process out of file descriptors (the files kept open to save time are given back first)."""

from __future__ import annotations

import errno
import os
import resource
from datetime import datetime, timezone

import pytest

from twin_local.session_files import PER_STRIPE
from twin_local.storage import FilesystemStore
from twin_local.stripe_locks import stripe_of
from twin_server.errors import BackendUnavailable
from twin_server.types import Message, Summary

SID = "session-0001"


@pytest.fixture
def read_only_root(tmp_path, monkeypatch):
    """A data directory written once, then refused to every open that asks to write (lock files too)."""
    root = tmp_path / "data"
    writer = FilesystemStore(root)
    writer.append(SID, [Message("user", "hello"), Message("assistant", "hi")])
    writer.save_summary(SID, Summary("Greetings.", datetime(2024, 3, 1, tzinfo=timezone.utc), 2))
    real_open = os.open

    def refuse_writes(path, flags, *args, **kwargs):
        if os.fspath(path).startswith(os.fspath(root)) and (flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_writes)
    return root


def test_a_read_only_data_directory_still_loads(read_only_root):
    reader = FilesystemStore(read_only_root)
    assert [m.content for m in reader.load(SID, 20)] == ["hello", "hi"]
    assert [m.content for m in reader.load(SID)] == ["hello", "hi"]
    assert reader.load_summary(SID).text == "Greetings."


def test_a_read_only_data_directory_refuses_a_write_loudly(read_only_root):
    reader = FilesystemStore(read_only_root)
    reader.load(SID, 20)
    with pytest.raises(BackendUnavailable, match="EROFS"):
        reader.append(SID, [Message("user", "more")])
    assert [m.content for m in FilesystemStore(read_only_root).load(SID)] == ["hello", "hi"]


def test_a_process_out_of_descriptors_gives_back_the_files_it_keeps_open(tmp_path):
    """EMFILE: the stripe's open session files (kept only to save an open) are closed and the open tried again."""
    store = FilesystemStore(tmp_path / "data")
    same = [s for s in (f"session-{n:06d}" for n in range(100_000)) if stripe_of(s) == stripe_of(SID)]
    kept, newcomer = same[:PER_STRIPE], same[PER_STRIPE]
    FilesystemStore(store.root).append(newcomer, [Message("user", "waiting")])
    for session_id in kept:
        store.append(session_id, [Message("user", session_id)])
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no descriptor left to open
    try:
        loaded = store.load(newcomer, 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [m.content for m in loaded] == ["waiting"]
    assert [m.content for m in store.load(kept[0], 20)] == [kept[0]]
