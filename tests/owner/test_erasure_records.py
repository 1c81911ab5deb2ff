"""A session erased by one process while another stores its events: the erasure's record makes those events go too."""

from datetime import datetime, timedelta, timezone

import pytest

from tests.doubles.event_documents import documents_of
from tests.doubles.moto_server import aws, moto_server  # noqa: F401  (fixtures)
from twin_server import DocumentEventStore
from twin_server.backends.erasures import ERASURES_KEPT, LOOK_EVERY
from twin_server.events import Lead, Question

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
ERASED = T0 + timedelta(minutes=1)
LATER = ERASED + timedelta(seconds=1)


class _EraseAfterTheMarker:
    """Documents shared with another process, which runs ``then`` right after a marker of a question is written
    (between a question's marker and its ask). Lists only where the documents under it keep them. ``touched``:
    the keys written and listed, in order."""

    def __init__(self, documents, *, lists):
        self.documents = documents
        self.then = None
        self.touched = []
        if lists:
            self.add_entry, self.entries = self._add_entry, documents.entries

    def read(self, key):
        return self.documents.read(key)

    def write(self, key, body, *, version):
        self.touched.append(key)
        written = self.documents.write(key, body, version=version)
        self._after(key)
        return written

    def remove(self, key):
        return self.documents.remove(key)

    def keys(self, prefix):
        self.touched.append(prefix)
        return self.documents.keys(prefix)

    def _add_entry(self, key, entry):
        self.documents.add_entry(key, entry)
        self._after(key)

    def _after(self, key):
        if key.startswith("asked/") and self.then is not None:
            then, self.then = self.then, None
            then()


@pytest.fixture(params=["files, a list a session", "files, a marker a question", "s3", "dynamodb"])
def shared(request, tmp_path):
    """Documents two processes share, as the recording one sees them."""
    kind = request.param.split(",")[0]
    return _EraseAfterTheMarker(documents_of(kind, request, tmp_path), lists="list" in request.param)


def lead(at, session="session-one"):
    return Lead.create(session, "jane@example.com", "Jane", at=at)


def test_an_ask_written_after_the_whole_erasure_of_its_session_takes_itself_back(shared):
    recorder = DocumentEventStore(shared)
    eraser = DocumentEventStore(shared.documents, clock=lambda: ERASED)
    recorder.record_question(Question.create("session-two", "Where do you live?", at=T0))
    for wording in ("Where do you live?", "How old are you?"):  # one another session asked, one it did not
        shared.then = lambda: eraser.delete_session("session-one")  # between the marker and the ask
        assert recorder.record_question(Question.create("session-one", wording, at=T0)) is False
    assert [(q.question, q.session_ids) for q in recorder.questions()] == [("Where do you live?", ("session-two",))]


def test_events_made_before_the_erasure_and_stored_after_it_are_not_kept(shared):
    store = DocumentEventStore(shared, clock=lambda: ERASED)
    store.delete_session("session-one")  # another process still holds the session's events, made at T0
    assert store.record_question(Question.create("session-one", "How old are you?", at=T0)) is False
    assert store.record_lead(lead(T0)) is False
    assert store.questions() == [] and store.leads() == []


def test_a_new_conversation_under_the_erased_id_keeps_its_events(shared):
    store = DocumentEventStore(shared, clock=lambda: ERASED)
    store.record_question(Question.create("session-one", "How old are you?", at=T0))
    store.record_lead(lead(T0))
    assert store.delete_session("session-one") == 2
    assert store.record_question(Question.create("session-one", "Where do you live?", at=LATER)) is True
    assert store.record_lead(lead(LATER)) is True
    assert [q.question for q in store.questions()] == ["Where do you live?"]
    assert [x.created_at for x in store.leads()] == [LATER]


def test_an_earlier_erasure_of_the_session_does_not_replace_a_later_one(shared):
    DocumentEventStore(shared, clock=lambda: LATER + timedelta(minutes=5)).delete_session("session-one")
    DocumentEventStore(shared, clock=lambda: ERASED).delete_session("session-one")  # a machine running behind
    store = DocumentEventStore(shared)
    assert store.record_question(Question.create("session-one", "How old are you?", at=LATER)) is False
    assert store.questions() == []


def test_a_deletion_removes_the_erasure_records_older_than_they_are_kept(shared):
    now = [T0]
    store = DocumentEventStore(shared, clock=lambda: now[0])
    store.delete_session("session-one")
    now[0] = T0 + ERASURES_KEPT / 2
    store.delete_session("session-two")
    shared.write("erased/session-four.json", b"{not json", version=None)
    now[0] = T0 + ERASURES_KEPT + timedelta(minutes=1)
    store.delete_session("session-three")
    assert sorted(shared.keys("erased/")) == ["erased/session-three.json", "erased/session-two.json"]


def test_a_deletion_writes_its_record_before_it_looks_for_what_the_session_left(shared):
    store = DocumentEventStore(shared)
    store.record_question(Question.create("session-one", "How old are you?", at=T0))
    shared.touched.clear()
    store.delete_session("session-one")
    assert shared.touched[0] == "erased/session-one.json"


def test_deletions_close_together_look_through_the_erasure_records_once(shared):
    now = [T0]
    store = DocumentEventStore(shared, clock=lambda: now[0])
    for session in ("session-one", "session-two", "session-three"):  # a sweep
        store.delete_session(session)
        now[0] += LOOK_EVERY / 10
    now[0] = T0 + LOOK_EVERY
    store.delete_session("session-four")
    assert shared.touched.count("erased/") == 2
