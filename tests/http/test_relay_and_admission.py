"""The relay's shared readers, and the per-worker caps on chats and streams in progress (issue 18, item 5)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.doubles.sse_client import parse
from twin_server.errors import StartupError
from twin_server.http import inflight
from twin_server.http.sse import Readers, Relay

PROBLEM = "application/problem+json"
V1 = {"model": "twin", "messages": [{"role": "user", "content": "x"}]}


def slow_words(count, pause, gate=None):
    def words():
        for i in range(count):
            if gate is not None:
                gate.wait(10)
            time.sleep(pause)
            yield f"w{i} "

    return words()


def test_one_reader_serves_stream_after_stream():
    readers = Readers()
    for _ in range(5):
        assert list(Relay(slow_words(3, 0), heartbeat=5, readers=readers)) == ["w0 ", "w1 ", "w2 "]
    assert readers.started == 1


def test_concurrent_streams_get_a_reader_each_and_heartbeats_cost_no_thread():
    readers, release = Readers(), threading.Event()
    relays = [Relay(slow_words(2, 0, gate=release), heartbeat=0.05, readers=readers) for _ in range(4)]
    iterators = [iter(relay) for relay in relays]
    assert [next(it) for it in iterators] == [None] * 4  # silent: a heartbeat each, from the waiting thread itself
    assert readers.busy == readers.threads == 4  # one reader per open stream, nothing per heartbeat
    release.set()
    assert [[p for p in it if p is not None] for it in iterators] == [["w0 ", "w1 "]] * 4
    assert readers.started == 4


def test_an_idle_reader_ends():
    readers = Readers(idle_seconds=0.05)
    assert list(Relay(slow_words(1, 0), heartbeat=5, readers=readers)) == ["w0 "]
    deadline = time.monotonic() + 5
    while readers.threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert readers.threads == 0
    assert list(Relay(slow_words(1, 0), heartbeat=5, readers=readers)) == ["w0 "]  # and a new one starts
    assert readers.started == 2


def test_without_heartbeats_the_consumer_reads_itself():
    readers, closed = Readers(), threading.Event()

    def words():
        try:
            yield "a"
            yield "b"
        finally:
            closed.set()

    relay = Relay(words(), heartbeat=0, readers=readers)
    pieces = iter(relay)
    assert next(pieces) == "a"
    relay.stop()  # the consumer is between pieces: the source is closed now
    assert closed.is_set() and list(pieces) == [] and readers.started == 0


def test_a_stopped_relay_that_never_started_closes_its_source():
    closed = threading.Event()

    def words():
        try:
            yield "a"
        finally:
            closed.set()

    source = words()
    next(source)
    relay = Relay(source, heartbeat=5, readers=Readers())
    relay.stop()
    assert closed.is_set() and list(relay) == []


# -- admission -------------------------------------------------------------------


def test_default_caps_leave_threads_for_everything_else():
    assert inflight.default_caps(64) == (56, 32)
    assert inflight.default_caps(8) == (6, 4)
    assert inflight.default_caps(4) == (2, 2)
    assert inflight.default_caps(1) == (1, 1)


def test_the_caps_follow_the_threads_gunicorn_gave_the_worker(scripted_app, monkeypatch):
    monkeypatch.setenv(inflight.THREADS_ENV, "16")
    gate = scripted_app().extensions["twin_server.inflight"]
    assert (gate.max_chats, gate.max_streams) == (14, 8)
    gate = scripted_app(MAX_CHATS=3, MAX_STREAMS="off").extensions["twin_server.inflight"]
    assert (gate.max_chats, gate.max_streams) == (3, None)
    assert "twin_server.inflight" not in scripted_app(MAX_CHATS="off", MAX_STREAMS="off").extensions


def test_bad_caps_stop_the_start(scripted_app):
    with pytest.raises(StartupError) as caught:
        scripted_app(MAX_CHATS="lots", MAX_STREAMS=0)
    text = "\n".join(caught.value.problems)
    assert "TWIN_MAX_CHATS" in text and "TWIN_MAX_STREAMS" in text


def blocked_stream(scripted, release):
    def step(prompt):
        yield "first "
        release.wait(10)
        yield "last"

    scripted.llm.steps.append(step)


def test_a_full_worker_answers_503_with_retry_after_and_frees_the_place_on_close(scripted_app, scripted):
    client = scripted_app(MAX_STREAMS=1, RATE_LIMIT="off").test_client()
    release = threading.Event()
    blocked_stream(scripted, release)
    open_stream = client.post("/chat/stream", json={"message": "hi"}, buffered=False)
    assert open_stream.status_code == 200
    for refused in (
        client.post("/chat/stream", json={"message": "hi"}),
        client.post("/v1/chat/completions", json={**V1, "stream": True}),
        client.post("/v1/chat/completions", json={**V1, "stream": "true"}),
    ):
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert client.post("/chat/stream", json={"message": "hi"}).get_json()["title"] == "Server busy"
    assert scripted.llm.calls == 1  # nothing of the refused ones reached the model (nor the session caps)
    assert client.post("/chat", json={"message": "hi"}).status_code == 200  # a whole reply is not a stream
    release.set()
    assert [e.event for e in parse(open_stream.get_data(as_text=True))][-1] == "done"
    open_stream.close()  # the server's close gives the place back
    assert client.post("/chat/stream", json={"message": "hi"}).status_code == 200


def test_the_chat_cap_counts_every_chat_and_nothing_else(scripted_app, scripted):
    client = scripted_app(MAX_CHATS=1, RATE_LIMIT="off").test_client()
    release = threading.Event()
    blocked_stream(scripted, release)
    open_stream = client.post("/chat/stream", json={"message": "hi"}, buffered=False)
    refused = client.post("/chat", json={"message": "hi"})
    assert refused.status_code == 503 and refused.mimetype == PROBLEM
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
    assert client.get("/conversation/visitor-0001").status_code == 200
    release.set()
    open_stream.get_data()
    open_stream.close()
    assert [client.post("/chat", json={"message": "hi"}).status_code for _ in range(3)] == [200] * 3  # one at a time


def test_a_refused_v1_call_keeps_the_openai_envelope(scripted_app, scripted):
    client = scripted_app(MAX_CHATS=1, RATE_LIMIT="off").test_client()
    release = threading.Event()
    blocked_stream(scripted, release)
    open_stream = client.post("/chat/stream", json={"message": "hi"}, buffered=False)
    refused = client.post("/v1/chat/completions", json=V1)
    assert refused.status_code == 503 and "error" in refused.get_json()
    release.set()
    open_stream.get_data()
    open_stream.close()


def test_a_request_that_fails_gives_its_place_back(scripted_app):
    client = scripted_app(MAX_CHATS=1, RATE_LIMIT="off").test_client()
    for _ in range(3):
        assert client.post("/chat", json={"nope": 1}).status_code == 400
        deep = client.post("/v1/chat/completions", data="[" * 50_000, content_type="application/json")
        assert deep.status_code == 400
    assert client.post("/chat", json={"message": "hi"}).status_code == 200
