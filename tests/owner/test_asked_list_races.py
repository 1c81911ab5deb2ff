"""A session erased on files while another process records a question of it: nothing it asked is left unfindable."""

import errno
from datetime import datetime, timezone

import pytest

from twin_server import DocumentEventStore, FileDocuments
from twin_server.backends import file_documents
from twin_server.errors import BackendUnavailable
from twin_server.events import Question

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)


class _AskingDuringTheErase(FileDocuments):
    """Files where, when the erase first reads a question, another process (``other``) records ``asked``."""

    other: DocumentEventStore
    asked: Question

    def read(self, key):
        if key.startswith("questions/") and getattr(self, "asked", None) is not None:
            asked, self.asked = self.asked, None
            self.other.record_question(asked)
        return super().read(key)


def test_a_question_recorded_while_its_session_is_erased_is_erased_by_the_next_erase(tmp_path):
    documents = _AskingDuringTheErase(tmp_path / "events")
    store = DocumentEventStore(documents)
    documents.other = DocumentEventStore(FileDocuments(tmp_path / "events"))
    store.record_question(Question.create("session-one", "Where do you live?", at=T0))
    documents.asked = Question.create("session-one", "How old are you?", at=T0)
    store.delete_session("session-one")  # the second question's marker is appended while it runs
    store.delete_session("session-one")  # the visitor, or the owner's sweep, erasing it again
    assert [q.session_ids for q in store.questions()] == []


def test_a_temporary_file_whose_write_fails_is_not_left_behind(tmp_path, monkeypatch):
    documents = FileDocuments(tmp_path / "events")
    documents._unnamed = False  # the named way, as where O_TMPFILE is refused

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    documents.write("questions/first.json", b"{}", version=None)
    monkeypatch.setattr(file_documents, "write_all", full_disk)
    with pytest.raises(BackendUnavailable, match="ENOSPC"):
        documents.write("questions/second.json", b"{}", version=None)
    assert sorted(p.name for p in documents.root.rglob("*") if p.is_file() and p.name != ".lock") == ["first.json"]
