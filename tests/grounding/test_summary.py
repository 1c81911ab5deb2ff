"""The rolling summary: made after the turn, stored with the session, used once messages leave the window."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.doubles.fake_openai import FakeOpenAI
from twin_server.app import create_app
from twin_server.app_state import EXTENSION_KEY
from twin_server.errors import BackendUnavailable
from twin_server.grounding.summary import MAX_CHARS, ExtractiveSummary, SummaryWorker
from twin_server.types import Message, Persona, Summary

KEY = "sk-test-summary-0123456789"
SUMMARY = "SUMMARY: Jane from Acme asked about survey boats and the sonar toolkit."
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def turns_of(app):
    return app.extensions[EXTENSION_KEY].turns


def test_the_llm_summarises_what_left_the_window_and_later_prompts_hold_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(default_reply=SUMMARY) as server:
        app = create_app({"LLM": "openai", "OPENAI_BASE_URL": server.base_url, "DATA_DIR": str(tmp_path / "data"),
                          "HISTORY_WINDOW": 4, "SUMMARY_EVERY": 2})
        client, turns = app.test_client(), turns_of(app)
        said = ["I'm Jane from Acme.", "Do you build survey boats?", "Tell me about Driftmap.", "Where are you?",
                "And your skills?"]
        for n, message in enumerate(said):
            server.reply(f"Reply {n}.")
            assert client.post("/chat", json={"message": message, "session_id": "summary-01"}).status_code == 200
            assert turns.summaries.worker.drain()
        requests = [r.json for r in server.requests]
    summary_calls = [r for r in requests if "running summary" in r["messages"][0]["content"]]
    # After turn 4 the first two messages had left the window of 4, after turn 5 two more.
    assert len(summary_calls) == 2 and requests.index(summary_calls[0]) == 4
    first, second = (call["messages"][-1]["content"] for call in summary_calls)
    assert "I'm Jane from Acme." in first and "Reply 0." in first and "Do you build" not in first
    assert "Summary so far:\n(none yet)" in first
    assert f"Summary so far:\n{SUMMARY}" in second and "Do you build survey boats?" in second
    assert summary_calls[0]["max_tokens"] == 300
    chats = [r for r in requests if r not in summary_calls]
    assert SUMMARY not in chats[3]["messages"][0]["content"]
    last_system = chats[4]["messages"][0]["content"]
    assert "## Earlier in this conversation\n" in last_system and SUMMARY in last_system
    assert [m["content"] for m in chats[4]["messages"][1:]] == [
        "Tell me about Driftmap.", "Reply 2.", "Where are you?", "Reply 3.", "And your skills?"]
    stored = Summary.from_json((tmp_path / "data" / "summary-01.summary.ndjson").read_bytes().splitlines()[-1])
    assert stored.text == SUMMARY and stored.messages == 4


class Summarising:
    """A scripted LLM that can summarise; its summariser fails on demand."""

    summarises = True

    def __init__(self):
        self.fail = False
        self.summaries = 0
        self.prompts = []

    def complete(self, prompt):
        self.prompts.append(prompt)
        if "running summary" in prompt.system:
            self.summaries += 1
            if self.fail:
                raise BackendUnavailable("the summariser is down")
            return f"summary number {self.summaries}"
        return f"echo: {prompt.messages[-1].content}"

    def stream(self, prompt):
        yield self.complete(prompt)


@pytest.fixture
def summarising(scripted):
    scripted.llm = Summarising()
    return scripted


def test_a_failing_summariser_never_fails_a_turn_and_the_previous_summary_stays(scripted_app, summarising, caplog):
    app = scripted_app(HISTORY_WINDOW=2, SUMMARY_EVERY=2, RETRY_LLM_MAX_ATTEMPTS=1)
    client, turns = app.test_client(), turns_of(app)

    def chat(n):
        response = client.post("/chat", json={"message": f"m{n}", "session_id": "failing-1"})
        assert response.status_code == 200 and turns.summaries.worker.drain()

    for n in range(3):
        chat(n)
    assert turns.backends.storage.load_summary("failing-1").text == "summary number 1"
    summarising.llm.fail = True
    with caplog.at_level(logging.ERROR, logger="twin_server.summary"):
        chat(3)
        chat(4)
    assert summarising.llm.summaries == 3
    assert "the previous one stays" in caplog.text
    assert turns.backends.storage.load_summary("failing-1").text == "summary number 1"
    chats = [p for p in summarising.llm.prompts if "running summary" not in p.system]
    assert "summary number 1" in chats[-1].system  # and it is still used


def test_without_a_summarising_llm_the_summary_is_extractive_and_kept_in_memory(scripted_app, scripted):
    app = scripted_app(HISTORY_WINDOW=2, SUMMARY_EVERY=2)
    client, turns = app.test_client(), turns_of(app)
    for n in range(4):
        client.post("/chat", json={"message": f"Question {n}? More words.", "session_id": "extract-01"})
        assert turns.summaries.worker.drain()
    summary = turns.backends.storage.load_summary("extract-01")  # MemoryStore has none: the core's memory
    assert summary.text.splitlines()[:2] == ["- The visitor asked: Question 0?", "- I answered: echo: Question 0?"]
    assert "Question 0?" in scripted.llm.prompts[-1].system
    assert all("running summary" not in p.system for p in scripted.llm.prompts)  # no model call for it
    client.delete("/conversation/extract-01")
    assert turns.backends.storage.load_summary("extract-01") is None


def test_a_store_that_cannot_give_the_summary_still_answers(scripted_app, scripted, monkeypatch):
    app = scripted_app(HISTORY_WINDOW=2)
    storage = turns_of(app).backends.storage

    def broken(session_id):
        raise BackendUnavailable("no summaries today")

    monkeypatch.setattr(storage, "load_summary", broken)
    response = app.test_client().post("/chat", json={"message": "hello", "session_id": "broken-01"})
    assert response.status_code == 200


def test_summaries_can_be_turned_off(scripted_app, scripted):
    app = scripted_app(HISTORY_WINDOW=2, SUMMARY_EVERY=0)
    client, turns = app.test_client(), turns_of(app)
    for n in range(5):
        client.post("/chat", json={"message": f"m{n}", "session_id": "nosummary"})
    assert turns.summaries.worker.drain() and turns.backends.storage.load_summary("nosummary") is None


def test_the_extractive_summary_drops_its_oldest_lines_first():
    messages = [Message("user" if n % 2 == 0 else "assistant", f"Sentence number {n}. " + "x" * 100,
                        T0 + timedelta(seconds=n)) for n in range(60)]
    text = ExtractiveSummary()("", messages, Persona("Bo"))
    assert len(text) <= MAX_CHARS
    assert text.splitlines()[-1] == "- I answered: Sentence number 59."
    assert "Sentence number 0." not in text


def first_sentence_by_regex(text: str) -> str:
    """What the extractive summary keeps of a message, as its first release found it: by a regex."""
    text = " ".join(text[:1280].split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    sentence = match.group(1) if match else text
    return sentence if len(sentence) <= 160 else sentence[:159].rstrip() + "…"


SENTENCE_PARTS = [". ", "! ", "? ", ".", "!", "?", " ", "\n", "\t", "\x1c", "\x85", "\u2028", "\u3000", "\xa0",
                  "Mr. Smith", "e.g.", "…", "a", "word ", "x" * 170]


@given(st.lists(st.sampled_from(SENTENCE_PARTS) | st.text(max_size=3), max_size=12).map("".join))
def test_the_extractive_summary_keeps_each_messages_first_sentence(content):
    expected = first_sentence_by_regex(content)
    text = ExtractiveSummary()("", [Message("user", content, T0)], Persona("Bo"))
    assert text == (f"- The visitor asked: {expected}" if expected else "")


def test_the_worker_runs_one_job_per_key_at_a_time():
    worker = SummaryWorker(maxsize=2)
    ran = []
    assert worker.submit("a", lambda: ran.append("a"))
    worker.drain()
    import threading

    hold = threading.Event()
    assert worker.submit("b", hold.wait)
    assert not worker.submit("b", lambda: ran.append("b twice"))
    hold.set()
    assert worker.drain() and ran == ["a"]


@pytest.mark.parametrize("bad", [b"not json", b'{"text": 1}', b'{"text": "x", "through": "yesterday"}'])
def test_a_stored_summary_that_is_not_one_is_refused(bad):
    with pytest.raises(ValueError):
        Summary.from_json(bad)


def test_the_store_is_read_for_summaries_once_every_every_over_two_turns(scripted_app, scripted):
    app = scripted_app(HISTORY_WINDOW=2, SUMMARY_EVERY=6)
    client, turns = app.test_client(), turns_of(app)
    for n in range(12):
        client.post("/chat", json={"message": f"m{n}", "session_id": "cheap-0001"})
        assert turns.summaries.worker.drain()
    # 12 history loads, and a job (one load each) on turns 4, 7 and 10: once the window of 2 is full
    assert scripted.store.calls.count("load") == 12 + 3
    # turn 4's job finds 4 messages out of the window (too few), turn 7's 10, turn 10's 6 more
    assert turns.backends.storage.load_summary("cheap-0001").messages == 10 + 6
