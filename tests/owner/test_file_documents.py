"""The filesystem's documents: a file of lines whose last complete line is the document, and what a crash,
a stale writer, compaction and an earlier release's files do to it."""

import errno
import hashlib
import json
import os
from datetime import datetime, timezone

import pytest

from twin_server import DocumentEventStore, FileDocuments
from twin_server.backends import file_documents, unnamed_files
from twin_server.errors import BackendUnavailable
from twin_server.events import Question

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
KEY = "questions/0123456789abcdef0123.json"


@pytest.fixture
def documents(tmp_path):
    return FileDocuments(tmp_path / "events")


def body(n, pad=0):
    return json.dumps({"n": f"{n:03d}", "pad": "x" * pad}, separators=(",", ":")).encode()


def update(documents, new):
    _, version = documents.read(KEY)
    assert documents.write(KEY, new, version=version) is True


def test_an_update_is_a_line_appended_and_the_last_complete_line_is_the_document(documents):
    documents.write(KEY, body(1), version=None)
    update(documents, body(2))
    assert (documents.root / KEY).read_bytes() == body(1) + b"\n" + body(2) + b"\n"
    assert documents.read(KEY) == (body(2), hashlib.sha256(body(2)).hexdigest())


def test_a_torn_last_line_is_passed_over_and_the_next_update_starts_a_line_of_its_own(documents):
    documents.write(KEY, body(1), version=None)
    update(documents, body(2))
    with open(documents.root / KEY, "ab") as file:
        file.write(body(3)[:5])  # a crash in the middle of an append (or a reader in the middle of one)
    assert documents.read(KEY)[0] == body(2)
    update(documents, body(4))
    assert documents.read(KEY)[0] == body(4)
    assert (documents.root / KEY).read_bytes() == body(1) + b"\n" + body(2) + b"\n" + body(4) + b"\n"


def test_an_update_at_a_version_no_longer_current_is_refused(documents):
    documents.write(KEY, body(1), version=None)
    _, first = documents.read(KEY)
    assert documents.write(KEY, body(2), version=first) is True
    assert documents.write(KEY, body(3), version=first) is False
    assert documents.write("questions/absent.json", body(3), version=first) is False
    assert documents.read(KEY)[0] == body(2)
    assert body(3) not in (documents.root / KEY).read_bytes()


def test_past_its_size_a_file_is_compacted_to_its_newest_line_and_versions_go_on(documents):
    documents.write(KEY, body(0, pad=2000), version=None)
    sizes, stale = [], None
    for n in range(1, 80):
        _, version = documents.read(KEY)
        if n == 40:
            stale = version
        assert documents.write(KEY, body(n, pad=2000), version=version) is True
        assert documents.read(KEY)[0] == body(n, pad=2000)
        sizes.append((documents.root / KEY).stat().st_size)
    assert max(sizes) <= file_documents.COMPACT_BYTES
    assert min(sizes) == len(body(0, pad=2000)) + 1  # right after a compaction: the newest line alone
    assert documents.read(KEY)[0] == body(79, pad=2000)
    assert documents.write(KEY, body(80), version=stale) is False
    update(documents, body(81))
    assert documents.read(KEY)[0] == body(81)


def test_a_document_longer_than_the_first_read_is_read_whole(documents):
    (documents.root / "questions").mkdir(parents=True)
    (documents.root / KEY).write_bytes(body(1, pad=9000))  # of the earlier release, no newline
    assert documents.read(KEY)[0] == body(1, pad=9000)
    update(documents, body(2, pad=9000))
    update(documents, body(3, pad=9000))
    assert documents.read(KEY)[0] == body(3, pad=9000)


def test_a_document_of_the_earlier_release_reads_and_updates_in_place(documents):
    question = Question.create("session-one", "Where do you live?", at=T0, delivery={"log": "pending"})
    legacy = json.dumps(question.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
    path = documents.root / f"questions/{question.id}.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(legacy)  # one JSON document, no newline, as the release before wrote it
    assert documents.read(f"questions/{question.id}.json") == (legacy, hashlib.sha256(legacy).hexdigest())
    store = DocumentEventStore(documents)
    assert [q.question for q in store.questions()] == ["Where do you live?"]
    assert store.record_question(Question.create("session-two", "Where do you live?", at=T0)) is False
    store.set_delivery("unanswered", question.id, {"log": "delivered"})
    [entry] = store.questions()
    assert entry.count == 2 and set(entry.session_ids) == {"session-one", "session-two"}
    assert entry.delivery == {"log": "delivered"}
    assert path.read_bytes().startswith(legacy + b"\n")


def test_a_body_with_a_newline_is_refused(documents):
    with pytest.raises(ValueError, match="newline"):
        documents.write(KEY, b'{"a":\n1}', version=None)
    assert documents.read(KEY) is None
    documents.write(KEY, body(1), version=None)
    with pytest.raises(ValueError, match="newline"):
        documents.write(KEY, b'{"a":\n1}', version=documents.read(KEY)[1])
    assert documents.read(KEY)[0] == body(1)


def test_an_empty_document_is_created_whole_in_a_private_folder_and_updates(documents):
    assert documents.write("asked/session-one.0123456789abcdef0123", b"", version=None) is True
    assert (documents.root.stat().st_mode & 0o777) == 0o700
    assert documents.write("asked/session-one.0123456789abcdef0123", b"", version=None) is False
    found, version = documents.read("asked/session-one.0123456789abcdef0123")
    assert found == b""
    assert documents.write("asked/session-one.0123456789abcdef0123", b"{}", version=version) is True
    assert documents.read("asked/session-one.0123456789abcdef0123")[0] == b"{}"


def _creates_in(documents, monkeypatch):
    """The names ``os.open`` creates, and the O_TMPFILE opens, while the test runs."""
    seen = {"named": [], "unnamed": 0}
    real_open = file_documents.os.open

    def spying_open(path, flags, *args, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            seen["unnamed"] += 1
        elif flags & os.O_CREAT and str(path).startswith(str(documents.root)) and not str(path).endswith(".lock"):
            seen["named"].append(os.path.basename(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(file_documents.os, "open", spying_open)
    return seen


def test_a_create_writes_an_unnamed_file_and_links_it_in_whole(documents, monkeypatch):
    documents.write("questions/first.json", body(0), version=None)  # the folders made
    seen = _creates_in(documents, monkeypatch)
    assert documents.write(KEY, body(1), version=None) is True
    assert documents.write(KEY, body(2), version=None) is False
    assert (documents.root / KEY).read_bytes() == body(1) + b"\n"
    assert seen == {"named": [], "unnamed": 2}
    assert sorted(p.name for p in documents.root.rglob("*") if p.is_file()) == [KEY.rsplit("/", 1)[1], "first.json"]


def _refusing_unnamed_opens(code, monkeypatch):
    real_open = file_documents.os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(file_documents.os, "open", refusing_open)


@pytest.mark.parametrize("refusal", ["EOPNOTSUPP", "EISDIR", "EINVAL", "no /proc"])
def test_where_unnamed_files_are_refused_a_create_goes_through_a_temporary_name(refusal, documents, monkeypatch,
                                                                                  tmp_path):
    if refusal == "no /proc":
        monkeypatch.setattr(unnamed_files, "_FD_LINKS", str(tmp_path / "no-proc"))
    else:
        _refusing_unnamed_opens(getattr(errno, refusal), monkeypatch)
    assert documents.write(KEY, body(1), version=None) is True
    seen = _creates_in(documents, monkeypatch)
    assert documents.write("questions/other.json", body(2), version=None) is True
    assert documents.write(KEY, body(3), version=None) is False
    assert seen["unnamed"] == 0 and len(seen["named"]) == 2  # the refusal is remembered: no second try
    assert all(name.startswith(".") and name.endswith(".tmp") for name in seen["named"])
    assert documents.read(KEY)[0] == body(1) and documents.read("questions/other.json")[0] == body(2)
    assert sorted(p.name for p in documents.root.rglob("*") if p.is_file() and p.name != ".lock") == [
        KEY.rsplit("/", 1)[1], "other.json"]


def test_a_create_that_fails_otherwise_is_reported_not_retried_by_name(documents, monkeypatch):
    _refusing_unnamed_opens(errno.ENOSPC, monkeypatch)
    with pytest.raises(BackendUnavailable, match="ENOSPC"):
        documents.write(KEY, body(1), version=None)
    assert documents.read(KEY) is None


def test_the_questions_a_session_asked_are_one_private_list_erased_with_the_session(documents):
    store = DocumentEventStore(documents)
    first = Question.create("session-one", "Where do you live?", at=T0)
    second = Question.create("session-one", "How old are you?", at=T0)
    for question in (first, second, first):
        store.record_question(question)
    store.record_question(Question.create("session-two", "How old are you?", at=T0))
    assert documents.keys("asked/") == ["asked/session-one", "asked/session-two"]
    assert documents.entries("asked/session-one") == [first.id.encode(), second.id.encode(), first.id.encode()]
    assert ((documents.root / "asked/session-one").stat().st_mode & 0o777) == 0o600
    assert store.delete_session("session-one") == 2
    [left] = store.questions()
    assert left.id == second.id and left.session_ids == ("session-two",)
    assert documents.keys("asked/") == ["asked/session-two"]


class _WithoutLists:
    """Documents as a store without lists keeps them (S3), and as files were before lists: a marker a question."""

    def __init__(self, inner):
        self.read, self.write, self.remove, self.keys = inner.read, inner.write, inner.remove, inner.keys


def test_a_session_asked_in_the_older_layout_is_erased_as_fully(documents):
    older = DocumentEventStore(_WithoutLists(documents))
    before = Question.create("session-one", "Where do you live?", at=T0)
    older.record_question(before)
    assert documents.keys("asked/") == [f"asked/session-one.{before.id}"]
    store = DocumentEventStore(documents)
    after = Question.create("session-one", "How old are you?", at=T0)
    store.record_question(after)
    store.record_question(Question.create("session-two", "How old are you?", at=T0))
    assert store.delete_session("session-one") == 2
    assert [(q.id, q.session_ids) for q in store.questions()] == [(after.id, ("session-two",))]
    assert documents.keys("asked/") == ["asked/session-two"]


def test_an_entry_torn_by_a_crash_reads_cut_short_and_the_next_stands_apart(documents):
    store = DocumentEventStore(documents)
    first = Question.create("session-one", "Where do you live?", at=T0)
    store.record_question(first)
    with open(documents.root / "asked/session-one", "ab") as file:
        file.write(b"\n0123456789")  # a crash in the middle of an append
    second = Question.create("session-one", "How old are you?", at=T0)
    store.record_question(second)
    assert documents.entries("asked/session-one") == [first.id.encode(), b"0123456789", second.id.encode()]
    assert store.delete_session("session-one") == 2
    assert store.questions() == []
    with pytest.raises(ValueError, match="newline"):
        documents.add_entry("asked/session-one", b"two\nlines")
