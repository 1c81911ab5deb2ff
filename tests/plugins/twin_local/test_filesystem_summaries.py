"""The filesystem store keeps each session's rolling summary beside it, and erases it with it."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import pytest

from twin_local.storage import FilesystemStore
from twin_server.testing import SummaryStoreContract
from twin_server.types import Message, Summary

AT = datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc)


def summary(text="Jane asked about boats."):
    return Summary(text, AT, 6, AT)


def test_a_summary_round_trips_and_is_replaced(tmp_path):
    store = FilesystemStore(tmp_path)
    store.append("sess-0001", [Message("user", "hi", AT)])
    assert store.load_summary("sess-0001") is None
    store.save_summary("sess-0001", summary())
    assert store.load_summary("sess-0001") == summary()
    store.save_summary("sess-0001", summary("A newer one."))
    assert store.load_summary("sess-0001").text == "A newer one."
    assert oct((tmp_path / "sess-0001.summary.json").stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_no_summary_is_kept_for_a_session_that_does_not_exist(tmp_path):
    store = FilesystemStore(tmp_path)
    store.save_summary("gone-0001", summary())
    assert store.load_summary("gone-0001") is None
    assert not (tmp_path / "gone-0001.summary.json").exists()


def test_deleting_or_expiring_a_session_erases_its_summary(tmp_path):
    store = FilesystemStore(tmp_path)
    for session in ("sess-del1", "sess-old1"):
        store.append(session, [Message("user", "hi", AT)])
        store.save_summary(session, summary())
    assert store.delete("sess-del1")
    assert store.load_summary("sess-del1") is None and not (tmp_path / "sess-del1.summary.json").exists()
    old = time.time() - 1000
    os.utime(tmp_path / "sess-old1.jsonl", (old, old))
    assert store.sweep(100) == 1
    assert not (tmp_path / "sess-old1.summary.json").exists()


def test_a_corrupt_summary_reads_as_none(tmp_path, caplog):
    store = FilesystemStore(tmp_path)
    store.append("sess-bad1", [Message("user", "hi", AT)])
    (tmp_path / "sess-bad1.summary.json").write_text("{not json")
    assert store.load_summary("sess-bad1") is None
    assert "corrupt summary" in caplog.text and "not json" not in caplog.text


class TestFilesystemSummaries(SummaryStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        return FilesystemStore(tmp_path / "data")
