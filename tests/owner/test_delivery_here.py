"""Events handled in the request's own thread once its response is sent, when the store and notifiers are here."""

import io
import json
import logging
import sys
import threading

import pytest

from tests.doubles.receiver import Receiver
from tests.doubles.scripted import ScriptedPlugin
from twin_server.app import create_app
from twin_server.backends.events import DocumentEventStore, FileDocuments
from twin_server.events import Question
from twin_server.owner.delivery import Batch, Delivery
from twin_server.types import utcnow

UNCOVERED = "What do you think about cryptocurrency?"


def chat(app, message, session):
    """POST /chat through WSGI as a server calls it; returns the result, its body read and not yet closed."""
    body = json.dumps({"message": message, "session_id": session}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/chat", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
               "wsgi.errors": sys.stderr, "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body))}
    status = []
    result = app(environ, lambda line, headers, exc_info=None: status.append(line))
    b"".join(result)
    assert status[0].startswith("200")
    return result


def owner_events_logged(caplog):
    return [r for r in caplog.records if r.name == "twin_server.owner" and r.getMessage().startswith("owner event")]


def test_with_files_and_the_log_notifier_the_request_thread_handles_its_events_once_the_response_is_closed(
        tmp_path, caplog):
    app = create_app({"DATA_DIR": str(tmp_path), "RATE_LIMIT": "off"})
    owner = app.extensions["twin_server"].owner
    caplog.set_level(logging.INFO, logger="twin_server.owner")
    result = chat(app, UNCOVERED, "visitor-00001")
    assert owner.questions() == []  # the reply never waits for its events
    result.close()
    [question] = owner.questions()  # no drain: stored and delivered by the close itself
    assert question.delivery == {"log": "delivered"}
    assert [r.threadName for r in owner_events_logged(caplog)] == [threading.current_thread().name]


def test_a_notifier_calling_another_machine_keeps_the_events_on_the_worker(tmp_path, caplog):
    with Receiver() as receiver:
        app = create_app({"DATA_DIR": str(tmp_path), "RATE_LIMIT": "off", "NOTIFY": "log,webhook",
                          "NOTIFY_WEBHOOK_URL": receiver.url})
        owner = app.extensions["twin_server"].owner
        caplog.set_level(logging.INFO, logger="twin_server.owner")
        chat(app, UNCOVERED, "visitor-00001").close()
        assert owner.delivery.drain(10)
    assert [r.threadName for r in owner_events_logged(caplog)] == ["twin-notify"]
    assert owner.questions()[0].delivery == {"log": "delivered", "webhook": "delivered"}


class Documents:
    def read(self, key):
        return None


class DocumentsElsewhere:
    """Files posing as another machine's documents (S3's, say): the same four methods, no ``local``."""

    def __init__(self, root):
        self.files = FileDocuments(root)

    def read(self, key):
        return self.files.read(key)

    def write(self, key, body, *, version):
        return self.files.write(key, body, version=version)

    def remove(self, key):
        return self.files.remove(key)

    def keys(self, prefix):
        return self.files.keys(prefix)


def test_an_event_store_on_another_machine_keeps_the_events_on_the_worker_with_a_local_notifier(tmp_path, caplog):
    plugin = ScriptedPlugin()  # its store in memory, answered by the offline model and the bundled persona
    plugin.store.event_store = lambda: DocumentEventStore(DocumentsElsewhere(tmp_path / "events"))
    app = create_app({"STORAGE": "memory", "DATA_DIR": str(tmp_path), "RATE_LIMIT": "off"}, plugins=[plugin])
    owner = app.extensions["twin_server"].owner
    caplog.set_level(logging.INFO, logger="twin_server.owner")
    chat(app, UNCOVERED, "visitor-00001").close()
    assert owner.delivery.drain(10)
    assert [r.threadName for r in owner_events_logged(caplog)] == ["twin-notify"]


def test_an_event_store_is_as_local_as_its_documents(tmp_path):
    assert DocumentEventStore(FileDocuments(tmp_path)).local is True
    assert DocumentEventStore(Documents()).local is False  # S3's documents, say: they declare nothing


class Store:
    """An event store that records what it stores; ``failing``: session ids it refuses; ``gate``: waited on."""

    def __init__(self, failing=(), gate=None):
        self.stored, self.deliveries, self.failing, self.gate = [], [], set(failing), gate
        self.entered = threading.Event()

    def record_question(self, question):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if question.session_id in self.failing:
            raise OSError("disk full")
        self.stored.append(question.session_id)
        return True

    def set_delivery(self, kind, event_id, states):
        self.deliveries.append(dict(states))


class FailingNotifier:
    name, local = "failing", True

    def notify(self, event, timeout=None):
        raise RuntimeError("no")


def question(session):
    return Question.create(session, f"What about {session}?", at=utcnow(), delivery={})


def in_batch(delivery, event):
    batch = Batch()
    delivery.current = lambda: batch
    delivery.put(event, store=True)
    delivery.current = lambda: None
    delivery.ended(batch)
    return batch


@pytest.mark.parametrize("here", [True, False])
def test_a_session_forgotten_before_its_event_is_handled_stays_forgotten_whatever_order_batches_go_in(here):
    store = Store()
    delivery = Delivery(store, [], here=here)
    earlier = in_batch(delivery, question("visitor-00001"))
    delivery.forget("visitor-00001", lambda: None)
    later = in_batch(delivery, question("visitor-00002"))
    delivery.sent(later)  # the later request's response is sent first
    assert delivery.drain(5)
    delivery.sent(earlier)
    assert delivery.drain(5)
    assert store.stored == ["visitor-00002"]


def test_drain_waits_for_a_batch_a_request_thread_is_handling():
    gate = threading.Event()
    store = Store(gate=gate)
    delivery = Delivery(store, [], here=True)
    batch = in_batch(delivery, question("visitor-00001"))
    sender = threading.Thread(target=delivery.sent, args=(batch,))
    sender.start()
    assert store.entered.wait(10)
    assert not delivery.drain(0.05)
    gate.set()
    assert delivery.drain(10)
    sender.join(10)
    assert store.stored == ["visitor-00001"]


def test_a_failing_store_or_notifier_in_the_request_thread_is_logged_never_raised(caplog):
    store = Store(failing={"visitor-00001"})
    delivery = Delivery(store, [FailingNotifier()], here=True)
    for session in ("visitor-00001", "visitor-00002"):
        delivery.sent(in_batch(delivery, question(session)))
    assert store.stored == ["visitor-00002"] and store.deliveries == [{"failing": "failed"}]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("could not store" in e for e in errors) and any("stays undelivered" in e for e in errors)


def test_an_event_of_a_forgotten_session_finding_the_queue_full_is_not_stored():
    gate = threading.Event()
    store = Store(gate=gate)
    delivery = Delivery(store, [], size=1)
    batch = in_batch(delivery, question("visitor-00003"))
    delivery.forget("visitor-00003", lambda: None)
    delivery.put(question("visitor-00001"), store=True)  # the worker takes it and waits in the store
    assert store.entered.wait(10)
    delivery.put(question("visitor-00002"), store=True)  # the queue's one place
    sender = threading.Thread(target=delivery.sent, args=(batch,))  # no room: stored by the sender, unless forgotten
    sender.start()
    gate.set()
    sender.join(10)
    assert delivery.drain(10)
    assert sorted(store.stored) == ["visitor-00001", "visitor-00002"]


def test_a_batch_whose_response_is_never_closed_goes_to_the_worker_not_to_the_thread_that_drains():
    store = Store()
    threads = []
    record = store.record_question
    store.record_question = lambda event: threads.append(threading.current_thread().name) or record(event)
    delivery = Delivery(store, [], here=True)
    in_batch(delivery, question("visitor-00001"))  # never sent: let go by its gate, or by drain
    assert delivery.drain(10)
    assert store.stored == ["visitor-00001"] and threads == ["twin-notify"]
