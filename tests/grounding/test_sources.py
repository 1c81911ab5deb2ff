"""Every reply says what it was based on: /chat, the SSE stream, /v1 (through the SDK) and the CLI."""

from __future__ import annotations

import threading

import openai
import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from tests.doubles.sse_client import parse
from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_server.cli import main

LOCATION = {"id": "facts.json#location", "title": "Location"}


@pytest.fixture
def client(local_app):
    return local_app().test_client()


def test_chat_answers_with_the_passages_it_used(client):
    body = client.post("/chat", json={"message": "Where are you based?"}).get_json()
    assert "Lisbon" in body["response"] and body["sources"] == [LOCATION]
    faq = client.post("/chat", json={"message": "Are you open to consulting?"}).get_json()
    assert faq["sources"] == [{"id": "faq.md#are-you-open-to-consulting-or-new-roles",
                               "title": "faq.md › Are you open to consulting or new roles?"}]


def test_a_question_the_persona_does_not_cover_has_no_sources(client):
    body = client.post("/chat", json={"message": "What is your favourite pizza topping?"}).get_json()
    assert "haven't written" in body["response"] and body["sources"] == []
    assert client.post("/chat", json={"message": "Hello!"}).get_json()["sources"] == [
        {"id": "facts.json#headline", "title": "Headline"}]  # the greeting introduces the twin from its headline


def test_the_stream_ends_with_the_sources(client):
    events = parse(client.post("/chat/stream", json={"message": "Where are you based?"}).get_data(as_text=True))
    done = events[-1]
    assert done.event == "done" and done.json()["sources"] == [LOCATION]


def test_stored_replies_keep_their_sources(client):
    body = client.post("/chat", json={"message": "Where are you based?"}).get_json()
    messages = client.get(f"/conversation/{body['session_id']}").get_json()["messages"]
    assert "sources" not in messages[0] and messages[1]["sources"] == [LOCATION]


def test_an_llm_reports_the_relevant_passages_it_was_sent(scripted_app, scripted):
    scripted.persona.persona = FilesystemPersonaSource(example_persona_dir()).load()
    client = scripted_app().test_client()
    body = client.post("/chat", json={"message": "Where are you based?"}).get_json()
    assert body["sources"] == [LOCATION] and scripted.llm.prompts[-1].sources[0].id == "facts.json#location"
    assert client.post("/chat", json={"message": "Any pizza tips?"}).get_json()["sources"] == []


def test_cite_narrows_the_sources_and_cannot_invent_one(scripted_app, scripted):
    scripted.persona.persona = FilesystemPersonaSource(example_persona_dir()).load()

    def citing(ids):
        def reply(prompt):
            prompt.cite(ids)
            return "Answered."
        return reply

    scripted.llm.steps = [citing(["faq.md#why-boats", "no-such#passage", "faq.md#why-boats"]), citing([])]
    client = scripted_app().test_client()
    first = client.post("/chat", json={"message": "Where are you based and why boats?"}).get_json()
    assert first["sources"] == [{"id": "faq.md#why-boats", "title": "faq.md › Why boats?"}]
    assert client.post("/chat", json={"message": "Where are you based?"}).get_json()["sources"] == []


@pytest.fixture
def live(local_app):
    server = make_server("127.0.0.1", 0, local_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_v1_carries_twin_sources_through_the_sdk(live):
    sdk = openai.OpenAI(base_url=live + "/v1", api_key="unused", max_retries=0, timeout=10)
    asked = [{"role": "user", "content": "Where are you based?"}]
    completion = sdk.chat.completions.create(model="ada-quill", messages=asked)
    assert "Lisbon" in completion.choices[0].message.content
    assert completion.model_extra["twin_sources"] == [LOCATION]
    chunks = list(sdk.chat.completions.create(model="ada-quill", messages=asked, stream=True))
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert last.model_extra["twin_sources"] == [LOCATION]
    assert all("twin_sources" not in (c.model_extra or {}) for c in chunks if c is not last)


def test_the_cli_shows_the_sources_dimmed(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(main, ["chat"], input="Where are you based?\nWhat is your favourite pizza?\n",
                                color=True)
    assert result.exit_code == 0, result.output
    assert "\x1b[2msources: Location\x1b[0m" in result.output
    assert result.output.count("sources:") == 1  # none for the question the persona does not cover
