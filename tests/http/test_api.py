"""The HTTP API with the real local plugin: filesystem storage and persona, offline LLM."""

import json
import os
import re

import pytest

PROBLEM = "application/problem+json"


@pytest.fixture
def client(local_app):
    return local_app().test_client()


def chat(client, **body):
    return client.post("/chat", json=body)


def assert_problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    doc = response.get_json()
    assert doc["status"] == status
    assert {"type", "title", "detail", "request_id"} <= set(doc)
    assert doc["request_id"] == response.headers["X-Request-ID"]
    return doc


# The six behaviours the original server was accepted on.


def test_chat_endpoint_creates_new_session(client):
    response = chat(client, message="What is your name?")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"response", "session_id", "history_loaded", "history_saved", "sources"}
    assert re.fullmatch(r"[0-9a-f-]{36}", body["session_id"])
    assert body["history_loaded"] is True and body["history_saved"] is True
    assert body["response"].strip()
    stored = client.get(f"/conversation/{body['session_id']}").get_json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"] == body["response"]


def test_chat_endpoint_uses_provided_session(client):
    first = chat(client, message="Hello", session_id="visitor-0001").get_json()
    second = chat(client, message="Where are you based?", session_id="visitor-0001").get_json()
    assert first["session_id"] == second["session_id"] == "visitor-0001"
    messages = client.get("/conversation/visitor-0001").get_json()["messages"]
    assert [m["content"] for m in messages[::2]] == ["Hello", "Where are you based?"]
    assert len(messages) == 4


def test_chat_endpoint_handles_missing_persona(local_app, tmp_path):
    empty = tmp_path / "no-persona"
    empty.mkdir()
    client = local_app(PERSONA_DIR=str(empty)).test_client()
    response = chat(client, message="Hi")
    doc = assert_problem(response, 500)
    assert str(tmp_path) not in response.get_data(as_text=True)
    assert "facts.json" not in response.get_data(as_text=True)
    assert doc["detail"].startswith("The persona")
    assert_problem(client.get("/ready"), 503)
    assert client.get("/health").status_code == 200
    # A fixed persona is picked up without a restart.
    (empty / "facts.json").write_text(json.dumps({"full_name": "Grace Lin"}))
    assert client.get("/ready").status_code == 200
    assert chat(client, message="What is your name?").status_code == 200


@pytest.mark.parametrize("message", ["", "   ", "\n\t "])
def test_chat_endpoint_validates_empty_message(client, message, tmp_path):
    doc = assert_problem(chat(client, message=message), 400)
    assert "message" in doc["errors"]
    assert list((tmp_path / "data").glob("*.jsonl")) == []  # nothing was stored


def test_get_history_endpoint_returns_empty_for_new_session(client):
    response = client.get("/conversation/never-seen-0001")
    assert response.status_code == 200
    assert response.get_json() == {"session_id": "never-seen-0001", "messages": [], "next": None}


def test_get_history_endpoint_returns_messages(client):
    chat(client, message="What are your skills?", session_id="history-0001")
    messages = client.get("/conversation/history-0001").get_json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "What are your skills?"
    for m in messages:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", m["timestamp"])


# Validation: every bad input is a 4xx problem, and touches nothing.


@pytest.mark.parametrize(
    "body, status",
    [
        ({}, 400),
        ({"message": 42}, 400),
        ({"message": ["a"]}, 400),
        ({"message": "hi", "extra": 1}, 400),
        ({"message": "hi", "session_id": 5}, 400),
        ({"message": "hi", "session_id": "short"}, 400),
        ({"message": "x" * 4001}, 400),
    ],
)
def test_invalid_bodies_are_400_problems(client, body, status):
    assert_problem(client.post("/chat", json=body), status)


def test_message_limit_is_configurable(local_app):
    client = local_app(MAX_MESSAGE_CHARS=10).test_client()
    assert_problem(chat(client, message="x" * 11), 400)
    assert chat(client, message="x" * 10).status_code == 200


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"hello"', b"null", b"42"])
def test_json_that_is_not_an_object_is_400(client, raw):
    assert_problem(client.post("/chat", data=raw, content_type="application/json"), 400)


def test_malformed_json_is_400(client):
    assert_problem(client.post("/chat", data=b'{"message": ', content_type="application/json"), 400)


def test_non_json_body_is_415(client):
    assert_problem(client.post("/chat", data="message=hi", content_type="application/x-www-form-urlencoded"), 415)


def test_oversized_body_is_413(client):
    body = json.dumps({"message": "x" * (70 * 1024)})
    assert_problem(client.post("/chat", data=body, content_type="application/json"), 413)


def test_unknown_route_and_wrong_method_are_problems(client):
    assert_problem(client.get("/nope"), 404)
    doc = assert_problem(client.put("/chat", json={}), 405)
    assert doc["type"] == "about:blank"


HOSTILE_IDS = ["../x", "a/b", "..%2F..%2Fetc%2Fpasswd", "abc\x00defgh", "x" * 1000, "sessión-ünïcode", "ab", "12345678.json"]


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
def test_hostile_session_ids_touch_no_file(local_app, tmp_path, session_id):
    client = local_app().test_client()
    before = sorted(p for p in tmp_path.rglob("*"))
    response = chat(client, message="hi", session_id=session_id)
    assert_problem(response, 400)
    quoted = session_id.replace("\x00", "%00")
    for method in (client.get, client.delete):
        response = method(f"/conversation/{quoted}")
        assert 400 <= response.status_code < 500
        assert response.mimetype == PROBLEM
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not os.path.exists(tmp_path / "x")


def test_delete_is_idempotent(client):
    chat(client, message="hi", session_id="erase-me-001")
    assert client.delete("/conversation/erase-me-001").status_code == 204
    assert client.get("/conversation/erase-me-001").get_json()["messages"] == []
    assert client.delete("/conversation/erase-me-001").status_code == 204


def test_request_id_is_echoed_when_sane_and_replaced_when_not(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    replaced = client.get("/health", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/health").headers["X-Request-ID"])


def test_ready_reports_persona_and_backends(client):
    body = client.get("/ready").get_json()
    assert body["status"] == "ready"
    assert body["backends"] == {"storage": "filesystem", "persona": "filesystem", "secrets": "env", "llm": "offline",
                                "notify": "log"}


def test_history_window_limits_what_the_llm_sees(scripted_app, scripted):
    client = scripted_app(HISTORY_WINDOW=4).test_client()
    for i in range(5):
        chat(client, message=f"m{i}", session_id="window-0001")
    seen = scripted.llm.prompts[-1].messages
    assert [m.content for m in seen] == ["m2", "echo: m2", "m3", "echo: m3", "m4"]
    assert scripted.llm.prompts[-1].system.startswith(scripted.llm.prompts[0].system[:20])


@pytest.mark.parametrize("path", ["/chat", "/chat/stream", "/v1/chat/completions"])
def test_json_nested_too_deeply_is_400(client, path):
    response = client.post(path, data=b"[" * 60_000, content_type="application/json")
    assert response.status_code == 400


def test_lone_surrogates_are_refused_before_the_llm(local_app, tmp_path):
    client = local_app().test_client()
    body = b'{"message": "hi \\ud800 there", "session_id": "surrogate-01"}'
    doc = assert_problem(client.post("/chat", data=body, content_type="application/json"), 400)
    assert "message" in doc["errors"]
    completion = b'{"model": "x", "messages": [{"role": "user", "content": "\\udfff"}]}'
    assert client.post("/v1/chat/completions", data=completion, content_type="application/json").status_code == 400
    assert not (tmp_path / "data" / "surrogate-01.jsonl").exists()


def test_a_session_made_for_the_turn_reads_no_history_and_a_named_one_does(local_app, monkeypatch):
    from twin_server.app_state import EXTENSION_KEY

    app = local_app()
    store = app.extensions[EXTENSION_KEY].backends.storage.backend
    reads = []
    for name in ("load", "load_summary"):
        real = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *args, real=real, name=name, **kw: reads.append(name) or real(*args, **kw))
    client = app.test_client()
    first = chat(client, message="Hello")
    assert first.status_code == 200 and reads == []
    again = chat(client, message="And where are you?", session_id=first.get_json()["session_id"])
    assert again.status_code == 200 and again.get_json()["history_loaded"] is True
    assert reads == ["load", "load_summary"]
