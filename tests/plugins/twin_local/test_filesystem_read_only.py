"""A data directory the server may only read (a read-only mount, another owner's files): loads still work,
writes fail loudly."""

from __future__ import annotations

import errno
import os
from datetime import datetime, timezone

import pytest

from twin_local.storage import FilesystemStore
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
