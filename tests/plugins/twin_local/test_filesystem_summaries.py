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
    assert oct((tmp_path / "sess-0001.summary.ndjson").stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_no_summary_is_kept_for_a_session_that_does_not_exist(tmp_path):
    store = FilesystemStore(tmp_path)
    store.save_summary("gone-0001", summary())
    assert store.load_summary("gone-0001") is None
    assert not (tmp_path / "gone-0001.summary.ndjson").exists()


def test_deleting_or_expiring_a_session_erases_its_summary(tmp_path):
    store = FilesystemStore(tmp_path)
    for session in ("sess-del1", "sess-old1"):
        store.append(session, [Message("user", "hi", AT)])
        store.save_summary(session, summary())
    assert store.delete("sess-del1")
    assert store.load_summary("sess-del1") is None and not (tmp_path / "sess-del1.summary.ndjson").exists()
    old = time.time() - 1000
    os.utime(tmp_path / "sess-old1.jsonl", (old, old))
    assert store.sweep(100) == 1
    assert not (tmp_path / "sess-old1.summary.ndjson").exists()


def test_a_corrupt_summary_reads_as_none(tmp_path, caplog):
    store = FilesystemStore(tmp_path)
    store.append("sess-bad1", [Message("user", "hi", AT)])
    (tmp_path / "sess-bad1.summary.ndjson").write_text("{not json\n")
    assert store.load_summary("sess-bad1") is None
    assert "corrupt summary" in caplog.text and "not json" not in caplog.text


class TestFilesystemSummaries(SummaryStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        return FilesystemStore(tmp_path / "data")


def test_each_summary_is_appended_and_the_newest_complete_line_is_read(tmp_path):
    store = FilesystemStore(tmp_path)
    store.append("sess-many", [Message("user", "hi", AT)])
    for n in range(3):
        store.save_summary("sess-many", summary(f"Summary {n}."))
    path = tmp_path / "sess-many.summary.ndjson"
    assert len(path.read_bytes().splitlines()) == 3
    with open(path, "ab") as torn:  # a crash in the middle of the next line
        torn.write(b'{"text": "Summary 3 that never')
    assert FilesystemStore(tmp_path).load_summary("sess-many").text == "Summary 2."
    store.save_summary("sess-many", summary("Summary 4."))
    assert FilesystemStore(tmp_path).load_summary("sess-many").text == "Summary 4."
    assert path.read_bytes().splitlines()[-1].startswith(b'{"')


def test_a_file_of_many_summaries_is_compacted_to_the_newest(tmp_path, monkeypatch):
    from twin_local import summaries

    monkeypatch.setattr(summaries, "COMPACT_BYTES", 2000)
    store = FilesystemStore(tmp_path)
    store.append("sess-long", [Message("user", "hi", AT)])
    for n in range(40):
        store.save_summary("sess-long", summary(f"Summary number {n} " + "x" * 100))
    path = tmp_path / "sess-long.summary.ndjson"
    assert path.stat().st_size <= 2000
    assert store.load_summary("sess-long").text.startswith("Summary number 39 ")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_summaries_are_not_listed_as_sessions(tmp_path):
    store = FilesystemStore(tmp_path)
    store.append("sess-list", [Message("user", "hi", AT)])
    store.save_summary("sess-list", summary())
    items, _ = store.sessions(10, None)
    assert [entry.session_id for entry in items] == ["sess-list"]


@pytest.mark.parametrize("count, chars", [(1, 1500), (12, 1500), (3, 2500), (40, 60)])  # 2500: past the first read
def test_the_newest_summary_is_read_whatever_the_length_of_the_lines(tmp_path, count, chars):
    store = FilesystemStore(tmp_path)
    store.append("sess-long", [Message("user", "hi", AT)])
    for n in range(count):
        store.save_summary("sess-long", summary(f"{n} " + "ü" * chars))  # two bytes a character: long lines
    assert FilesystemStore(tmp_path).load_summary("sess-long").text == f"{count - 1} " + "ü" * chars


@pytest.mark.parametrize("erase", ["delete", "sweep"])
def test_erasing_a_session_removes_the_summary_file_of_the_release_before_too(tmp_path, erase):
    store = FilesystemStore(tmp_path)
    store.append("sess-old", [Message("user", "hi", AT)])
    legacy = tmp_path / "sess-old.summary.json"  # one JSON document, as the release before wrote it
    legacy.write_bytes(summary("what the visitor said before the upgrade").to_json())
    store.save_summary("sess-old", summary())
    if erase == "delete":
        assert store.delete("sess-old")
    else:
        assert store.sweep(0, now=time.time() + 3600) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []


def test_a_summary_another_worker_saved_within_the_same_clock_tick_is_read(tmp_path):
    """File times may be coarse (a few ms): a newer summary with the old mtime is still told apart by its size."""
    store = FilesystemStore(tmp_path)
    store.append("sess-0001", [Message("user", "hi", AT)])
    store.save_summary("sess-0001", summary())
    assert store.load_summary("sess-0001") == summary()
    path = tmp_path / "sess-0001.summary.ndjson"
    before = path.stat()
    FilesystemStore(tmp_path).save_summary("sess-0001", summary("Another worker's."))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert store.load_summary("sess-0001").text == "Another worker's."
