"""Session expiry for the filesystem store: ``FilesystemStore.sweep`` and ``twin-server sweep``."""

import os
import time

import pytest
from click.testing import CliRunner

from twin_local.storage import FilesystemStore
from twin_server.cli import main
from twin_server.types import Message

DAY = 86400


def aged(store, session_id, seconds_ago):
    store.append(session_id, [Message("user", "hi"), Message("assistant", "hello")])
    stamp = time.time() - seconds_ago
    os.utime(store.root / f"{session_id}.jsonl", (stamp, stamp))


def test_sweep_erases_only_sessions_idle_longer_than_the_ttl(tmp_path):
    store = FilesystemStore(tmp_path)
    aged(store, "visitor-old1", 3 * DAY)
    aged(store, "visitor-old2", 2 * DAY)
    aged(store, "visitor-new1", 60)
    (tmp_path / "notes.txt").write_text("not a session")
    assert store.sweep(DAY) == 2
    assert store.load("visitor-old1") == [] and store.load("visitor-old2") == []
    assert len(store.load("visitor-new1")) == 2
    assert (tmp_path / "notes.txt").exists()
    assert store.sweep(DAY) == 0


def test_a_session_written_during_the_sweep_is_kept(tmp_path):
    store = FilesystemStore(tmp_path)
    aged(store, "visitor-0001", 3 * DAY)
    now = time.time()
    store.append("visitor-0001", [Message("user", "back again")])  # touched after the sweep began
    assert store.sweep(DAY, now=now + 1) == 0
    with pytest.raises(ValueError):
        store.sweep(-1)


def test_the_sweep_command_uses_the_session_ttl(tmp_path, monkeypatch):
    data = tmp_path / "data"
    store = FilesystemStore(data)
    aged(store, "visitor-old1", 2 * DAY)
    aged(store, "visitor-new1", 10)
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    assert CliRunner().invoke(main, ["sweep"]).exit_code == 2  # no TTL: nothing to go by
    monkeypatch.setenv("TWIN_SESSION_TTL", str(DAY))
    result = CliRunner().invoke(main, ["sweep"])
    assert result.exit_code == 0, result.output
    assert "erased 1 session" in result.output
    assert not (data / "visitor-old1.jsonl").exists() and (data / "visitor-new1.jsonl").exists()
    result = CliRunner().invoke(main, ["sweep", "--max-age", "5"])
    assert "erased 1 session" in result.output
