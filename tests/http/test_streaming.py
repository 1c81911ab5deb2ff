"""POST /chat/stream: event order, failures before and after the first byte, heartbeats, disconnects."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.doubles.servers import gunicorn
from tests.doubles.sse_client import iter_events, parse
from twin_server.errors import (
    BackendUnavailable,
    HistoryTooLong,
    LimitExceeded,
    PersonaError,
    RateLimited,
    StartupError,
    ValidationError,
)

PROBLEM = "application/problem+json"


def stream(client, **body):
    return client.post("/chat/stream", json=body, buffered=False)


def events_of(response):
    return parse(response.get_data(as_text=True))


def words_then(words, failure=None, *, pause=0.0, closed=None):
    """A scripted LLM step: these words, one by one, then ``failure`` raised (if any)."""

    def step(prompt):
        try:
            for i, word in enumerate(words):
                if i and pause:
                    time.sleep(pause)
                yield word
            if failure is not None:
                raise failure
        finally:
            if closed is not None:
                closed.set()

    return step


def endless(closed):
    def step(prompt):
        try:
            i = 0
            while True:
                yield f"w{i} "
                i += 1
                time.sleep(0.001)
        finally:
            closed.set()

    return step


def test_events_come_in_order_and_the_turn_is_stored(scripted_app, scripted):
    response = stream(scripted_app().test_client(), message="hello there")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["X-Request-ID"]
    events = events_of(response)
    assert [e.event for e in events] == ["session", "delta", "delta", "delta", "done"]
    session_id = events[0].json()["session_id"]
    assert [e.json()["text"] for e in events[1:4]] == ["echo: ", "hello ", "there"]
    assert events[-1].json() == {
        "session_id": session_id,
        "response": "echo: hello there",
        "history_loaded": True,
        "history_saved": True,
        "sources": [],
    }
    stored = scripted.store.sessions[session_id]
    assert [(m.role, m.content, m.complete) for m in stored] == [
        ("user", "hello there", True),
        ("assistant", "echo: hello there", True),
    ]
    assert scripted.store.calls.count("append") == 1


def test_a_given_session_continues_with_its_history(scripted_app, scripted):
    client = scripted_app().test_client()
    events_of(stream(client, message="first", session_id="stream-0001"))
    events = events_of(stream(client, message="second", session_id="stream-0001"))
    assert events[0].json() == {"session_id": "stream-0001"}
    assert [m.content for m in scripted.llm.prompts[-1].messages] == ["first", "echo: first", "second"]
    assert len(scripted.store.sessions["stream-0001"]) == 4


@pytest.mark.parametrize(
    "failure, status",
    [
        (BackendUnavailable("llm down at 10.0.0.7"), 503),
        (LimitExceeded("too many chats today"), 429),
        (HistoryTooLong("too long"), 400),
    ],
)
def test_llm_failures_before_the_first_piece_are_problem_responses(scripted_app, scripted, failure, status):
    scripted.llm.steps = [failure] * 3
    response = stream(scripted_app().test_client(), message="hi")
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    doc = response.get_json()
    assert doc["status"] == status
    assert "10.0.0.7" not in response.get_data(as_text=True)
    assert "append" not in scripted.store.calls


def test_a_rate_limited_llm_keeps_retry_after(scripted_app, scripted):
    scripted.llm.steps = [RateLimited("slow down", retry_after=7)] * 3
    response = stream(scripted_app().test_client(), message="hi")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"


def test_a_persona_failure_is_a_500_problem_without_details(scripted_app, scripted):
    scripted.persona.failures = [PersonaError("/secret/path/facts.json is broken")]
    response = stream(scripted_app().test_client(), message="hi")
    assert response.status_code == 500 and response.mimetype == PROBLEM
    assert "/secret/path" not in response.get_data(as_text=True)
    assert scripted.llm.calls == 0


@pytest.mark.parametrize("body", [{}, {"message": "  "}, {"message": "hi", "session_id": "bad id"}, {"message": "x" * 4001}])
def test_invalid_bodies_are_400_problems(scripted_app, scripted, body):
    response = scripted_app().test_client().post("/chat/stream", json=body)
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert scripted.llm.calls == 0


def test_an_llm_failure_mid_stream_ends_with_an_error_event(scripted_app, scripted):
    scripted.llm.steps = [words_then(["one ", "two "], BackendUnavailable("socket reset by 10.0.0.7"))]
    response = stream(scripted_app().test_client(), message="hi")
    assert response.status_code == 200
    events = events_of(response)
    assert [e.event for e in events] == ["session", "delta", "delta", "error"]
    problem = events[-1].json()
    assert problem["status"] == 503
    assert problem["operation"] == "llm"
    assert problem["detail"] == "The language model is unavailable; try again later."
    assert problem["request_id"] == response.headers["X-Request-ID"]
    assert "10.0.0.7" not in response.get_data(as_text=True)
    stored = scripted.store.sessions[events[0].json()["session_id"]]
    assert [(m.role, m.content, m.complete) for m in stored] == [("user", "hi", True), ("assistant", "one two ", False)]


def test_a_disconnect_stores_what_was_sent_as_incomplete_and_stops_the_llm(scripted_app, scripted):
    closed = threading.Event()
    scripted.llm.steps = [endless(closed)]
    response = stream(scripted_app().test_client(), message="hi")
    events = iter_events(iter(response.response))
    session_id = next(events).json()["session_id"]
    seen = [next(events).json()["text"] for _ in range(3)]
    response.close()  # what the server does when the client has gone
    assert closed.wait(5), "the LLM's stream was not closed"
    stored = scripted.store.sessions[session_id]
    assert [(m.role, m.content, m.complete) for m in stored] == [("user", "hi", True), ("assistant", "".join(seen), False)]
    assert scripted.store.calls.count("append") == 1


def test_a_stream_closed_before_its_first_event_still_stores_the_turn(scripted_app, scripted):
    closed = threading.Event()
    scripted.llm.steps = [endless(closed)]
    response = stream(scripted_app().test_client(), message="hi")
    response.close()
    assert closed.wait(5)
    [(session_id, stored)] = scripted.store.sessions.items()
    assert [(m.role, m.content, m.complete) for m in stored] == [("user", "hi", True), ("assistant", "", False)]
    assert scripted.store.calls.count("append") == 1


def test_heartbeats_are_sent_while_the_llm_is_silent(scripted_app, scripted):
    scripted.llm.steps = [words_then(["slow ", "reply"], pause=0.4)]
    response = stream(scripted_app(SSE_HEARTBEAT=0.05).test_client(), message="hi")
    raw = response.get_data(as_text=True)
    assert "\n\n: keep-alive\n\n" in raw
    events = parse(raw)
    kinds = [e.event or f"comment {e.comment}" for e in events]
    assert kinds[:2] == ["session", "delta"] and kinds[-2:] == ["delta", "done"]
    assert set(kinds[2:-2]) == {"comment keep-alive"} and len(kinds[2:-2]) >= 3
    assert events[-1].json()["response"] == "slow reply"


def test_no_heartbeat_when_pieces_keep_coming(scripted_app, scripted):
    scripted.llm.steps = [words_then(["quick ", "little ", "reply"])]
    response = stream(scripted_app(SSE_HEARTBEAT=5).test_client(), message="hi")
    raw = response.get_data(as_text=True)
    assert response.status_code == 200
    events = parse(raw)
    assert [e.event for e in events] == ["session", "delta", "delta", "delta", "done"]
    assert events[-1].json()["response"] == "quick little reply"
    assert "keep-alive" not in raw


def test_a_failed_save_is_reported_in_done(scripted_app, scripted):
    scripted.store.append_failures = [ValidationError("disk says no")]
    events = events_of(stream(scripted_app().test_client(), message="hi"))
    assert events[-1].event == "done"
    assert events[-1].json()["history_saved"] is False


@pytest.mark.parametrize("value", ["soon", -1])
def test_a_bad_heartbeat_setting_stops_the_start(scripted_app, value):
    with pytest.raises(StartupError, match="TWIN_SSE_HEARTBEAT"):
        scripted_app(SSE_HEARTBEAT=value)


# A real gunicorn process, a real socket, and the paced LLM (100 tokens, 10 ms apart).

TOKENS = 100


@pytest.fixture(scope="module")
def paced_server(tmp_path_factory):
    env = {
        "TWIN_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "TWIN_LLM": "paced",
        "TWIN_PACED_INTERVAL": "0.01",
        "TWIN_PACED_TOKENS": str(TOKENS),
    }
    with gunicorn(env, app="tests.doubles.paced_app:app", workers=2, threads=4) as url:
        yield url


def open_stream(url, **body):
    response = requests.post(url + "/chat/stream", json=body, stream=True, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    return response, iter_events(response.iter_content(chunk_size=None))


def test_a_stream_over_a_real_socket(paced_server):
    response, events = open_stream(paced_server, message="hi")
    with response:
        received = list(events)
    assert received[0].event == "session"
    assert [e.event for e in received[1:-1]] == ["delta"] * TOKENS
    text = "".join(e.json()["text"] for e in received[1:-1])
    assert text == "".join(f"w{i} " for i in range(TOKENS))
    done = received[-1].json()
    assert received[-1].event == "done" and done["response"] == text and done["history_saved"] is True
    session_id = received[0].json()["session_id"]
    stored = requests.get(f"{paced_server}/conversation/{session_id}", timeout=10).json()["messages"]
    assert stored[1] == {**stored[1], "role": "assistant", "content": text} and "complete" not in stored[1]


def test_a_client_that_leaves_mid_stream_leaves_its_partial_reply_stored(paced_server):
    response, events = open_stream(paced_server, message="hi")
    session_id = next(events).json()["session_id"]
    seen = "".join(next(events).json()["text"] for _ in range(3))
    response.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        messages = requests.get(f"{paced_server}/conversation/{session_id}", timeout=10).json()["messages"]
        if messages:
            break
        time.sleep(0.05)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    reply = messages[1]
    assert reply["complete"] is False
    assert reply["content"].startswith(seen)
    assert len(reply["content"]) < len("".join(f"w{i} " for i in range(TOKENS)))
