"""The document event store, on files and on S3 (moto's server): dedup, merging, erasure, deliveries, races."""

import random
import threading
from datetime import datetime, timedelta, timezone

import pytest

from tests.doubles.event_documents import KINDS, documents_of
from tests.doubles.moto_server import aws, moto_server  # noqa: F401  (fixtures)
from twin_server import DocumentEventStore, FileDocuments
from twin_server.backends.events import LONGEST_PAUSE, MAX_CONFLICTS, RetryingEvents
from twin_server.errors import BackendError, TransientError
from twin_server.events import Lead, Question
from twin_server.retry import Retrier, RetryConfig

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)


@pytest.fixture(params=KINDS)
def documents(request, tmp_path):
    return documents_of(request.param, request, tmp_path)


@pytest.fixture
def store(documents):
    return DocumentEventStore(documents)


def lead(session="session-one", email="jane@example.com", at=T0, **kw):
    return Lead.create(session, email, kw.pop("name", "Jane"), kw.pop("notes", ""), at=at, **kw)


def test_a_lead_is_stored_once_per_session_and_address(store):
    assert store.record_lead(lead()) is True
    assert store.record_lead(lead(email="JANE@example.com", name="Jane D.")) is False
    assert store.record_lead(lead(email="bob@example.com")) is True
    assert store.record_lead(lead(session="session-two")) is True
    assert sorted((x.session_id, x.email) for x in store.leads()) == [
        ("session-one", "bob@example.com"), ("session-one", "jane@example.com"), ("session-two", "jane@example.com")]
    assert {x.name for x in store.leads() if x.email == "jane@example.com"} == {"Jane"}  # the first stays


def test_a_repeated_question_is_one_entry_counting_its_asks(store):
    assert store.record_question(Question.create("session-one", "How old are you?", at=T0)) is True
    assert store.record_question(Question.create("session-two", "how old are you", at=T0 + timedelta(1))) is False
    assert store.record_question(Question.create("session-one", "How old are you?!", at=T0)) is False
    [entry] = store.questions()
    assert entry.count == 3 and set(entry.session_ids) == {"session-one", "session-two"}
    assert entry.question == "How old are you?" and entry.last_asked == T0 + timedelta(1)


def test_deleting_a_session_erases_its_leads_and_its_asks(store, documents):
    store.record_lead(lead())
    store.record_lead(lead(session="session-two"))
    store.record_question(Question.create("session-one", "Only one asked this?", at=T0))
    store.record_question(Question.create("session-one", "Both asked this?", at=T0))
    store.record_question(Question.create("session-two", "Both asked this?", at=T0))
    assert store.delete_session("session-one") == 3
    assert [x.session_id for x in store.leads()] == ["session-two"]
    [left] = store.questions()
    assert left.question == "Both asked this?" and left.session_ids == ("session-two",) and left.count == 1
    # Of the session only the record of its erasure is left (removed by a deletion an hour on).
    assert [k for k in documents.keys("") if "session-one" in k] == ["erased/session-one.json"]
    assert store.delete_session("session-one") == 0
    assert store.delete_session("../etc") == 0


def test_a_lead_is_deleted_by_its_id(store):
    stored = lead()
    store.record_lead(stored)
    assert store.delete_lead("not-an-id") is False
    assert store.delete_lead(stored.id) is True
    assert store.delete_lead(stored.id) is False
    assert store.leads() == []


def test_deliveries_are_recorded_and_never_bring_an_erased_event_back(store):
    stored = lead(delivery={"log": "pending", "webhook": "pending"})
    store.record_lead(stored)
    store.set_delivery("lead", stored.id, {"webhook": "failed"})
    store.set_delivery("lead", stored.id, {"log": "delivered"})
    [found] = store.leads()
    assert found.delivery == {"log": "delivered", "webhook": "failed"}
    question = Question.create("session-one", "Why?", at=T0, delivery={"log": "pending"})
    store.record_question(question)
    store.set_delivery("unanswered", question.id, {"log": "delivered"})
    assert store.questions()[0].delivery == {"log": "delivered"}
    store.delete_lead(stored.id)
    store.set_delivery("lead", stored.id, {"webhook": "delivered"})
    assert store.leads() == []


def test_concurrent_asks_of_one_question_are_all_counted(store):
    def ask(worker):
        for n in range(6):
            store.record_question(Question.create(f"session-{worker:02d}-{n:02d}", "Same question?", at=T0))

    threads = [threading.Thread(target=ask, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [entry] = store.questions()
    assert entry.count == 36 and len(entry.session_ids) == 36


def test_a_corrupt_document_is_skipped(store, documents):
    store.record_lead(lead())
    documents.write("leads/session-two.0123456789abcdef0123.json", b"{not json", version=None)
    assert [x.session_id for x in store.leads()] == ["session-one"]


def test_file_documents_refuse_a_key_that_leaves_their_folder(tmp_path):
    documents = FileDocuments(tmp_path / "events")
    for key in ("../outside", "leads/../../x", "/etc/passwd", "a//b"):
        with pytest.raises(ValueError):
            documents.write(key, b"x", version=None)
    assert not (tmp_path / "outside").exists()


def test_file_documents_are_private_and_created_only_when_written(tmp_path):
    root = tmp_path / "events"
    documents = FileDocuments(root)
    assert documents.keys("leads/") == [] and not root.exists()
    documents.write("leads/session-one/x.json", b"{}", version=None)
    assert (root.stat().st_mode & 0o777) == 0o700
    assert ((root / "leads/session-one/x.json").stat().st_mode & 0o777) == 0o600


class _Conflicting:
    """Documents whose first ``losses`` conditional updates lose to an imaginary other writer."""

    def __init__(self, inner, losses):
        self.inner, self.losses, self.updates = inner, losses, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write(self, key, body, *, version):
        if version is not None:
            self.updates += 1
            if self.updates <= self.losses:
                return False
        return self.inner.write(key, body, version=version)


class _Highest(random.Random):
    def uniform(self, a, b):
        return b


def test_a_lost_update_is_retried_after_a_pause_that_doubles(tmp_path):
    documents = _Conflicting(FileDocuments(tmp_path / "events"), losses=4)
    pauses = []
    store = DocumentEventStore(documents, sleep=pauses.append, rng=_Highest())
    store.record_question(Question.create("session-one", "Why?", at=T0))
    assert pauses == []  # a first write has nothing to lose to
    assert store.record_question(Question.create("session-two", "Why?", at=T0)) is False
    assert pauses == pytest.approx([0.002, 0.004, 0.008, 0.016])
    [entry] = store.questions()
    assert entry.count == 2


def test_an_update_that_always_loses_gives_up_with_a_backend_error(tmp_path):
    documents = _Conflicting(FileDocuments(tmp_path / "events"), losses=10**6)
    pauses = []
    store = DocumentEventStore(documents, sleep=pauses.append)
    store.record_question(Question.create("session-one", "Why?", at=T0))
    with pytest.raises(BackendError) as caught:
        RetryingEvents(store, "files", Retrier(RetryConfig(max_attempts=3), sleep=pauses.append)).record_question(
            Question.create("session-two", "Why?", at=T0))
    assert not isinstance(caught.value, TransientError)  # the pauses were the retries: the core adds none
    assert documents.updates == MAX_CONFLICTS and len(pauses) == MAX_CONFLICTS - 1
    assert all(0 <= pause <= LONGEST_PAUSE for pause in pauses)
