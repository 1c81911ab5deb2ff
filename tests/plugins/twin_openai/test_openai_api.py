"""POST /chat with TWIN_LLM=openai: the installed plugins, the core's retry, the real SDK, a local server."""

from __future__ import annotations

import email.utils
import logging
import time

import openai
import pytest

from twin_server.turn.turn import TurnRequest

from tests.doubles.fake_openai import FakeOpenAI
from twin_openai.translate import HISTORY_TOO_LONG
from twin_server.app import create_app
from twin_server.error_registry import PROBLEM_TYPE_PREFIX
from twin_server.app_state import EXTENSION_KEY

KEY = "sk-test-api-0123456789abcdef"


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def openai_app(server, tmp_path, monkeypatch, clock):
    """The app as an operator runs it (entry points, env secrets), with the core's clock faked."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    def build(*, real_clock: bool = False, **config):
        return create_app(
            {"LLM": "openai", "SECRETS": "env", "OPENAI_BASE_URL": server.base_url,
             "DATA_DIR": str(tmp_path / "data"), **config},
            retry_options=None if real_clock else {"clock": clock, "sleep": clock.sleep},
        )

    return build


def chat(app, message="What do you do?", session_id="openai-session"):
    return app.test_client().post("/chat", json={"message": message, "session_id": session_id})


def test_a_turn_goes_through_the_sdk_and_keeps_the_history(openai_app, server):
    app = openai_app(OPENAI_MODEL="gpt-test", OPENAI_TEMPERATURE=0.5)
    server.reply("I build survey boats.")
    first = chat(app)
    assert first.status_code == 200 and first.get_json()["response"] == "I build survey boats."
    server.reply("In Lisbon.")
    assert chat(app, "Where?").get_json()["response"] == "In Lisbon."
    one, two = server.requests
    assert one.headers["authorization"] == f"Bearer {KEY}"
    assert (one.json["model"], one.json["temperature"]) == ("gpt-test", 0.5)
    system, *rest = two.json["messages"]
    assert system["role"] == "system" and "Ada Quill" in system["content"]
    assert rest == [
        {"role": "user", "content": "What do you do?"},
        {"role": "assistant", "content": "I build survey boats."},
        {"role": "user", "content": "Where?"},
    ]


def problem(slug: str) -> str:
    return PROBLEM_TYPE_PREFIX + slug


@pytest.mark.parametrize(
    "status, code, headers, answered, kind, attempts",
    [
        (429, "rate_limit_exceeded", {}, 503, problem("rate-limited"), 3),
        (429, "insufficient_quota", {}, 503, problem("quota-exhausted"), 1),
        (401, "invalid_api_key", {}, 502, problem("credentials-rejected"), 1),
        (403, None, {}, 502, problem("credentials-rejected"), 1),
        (400, "context_length_exceeded", {}, 400, problem("history-too-long"), 1),
        (404, "model_not_found", {}, 502, problem("backend-error"), 1),
        (500, None, {}, 503, problem("backend-unavailable"), 3),
        (500, None, {"x-should-retry": "false"}, 502, problem("backend-error"), 1),
        (400, None, {"x-should-retry": "true"}, 503, problem("backend-unavailable"), 3),
    ],
)
def test_each_failure_answers_its_status_after_exactly_its_attempts(
    openai_app, server, status, code, headers, answered, kind, attempts
):
    app = openai_app(RETRY_LLM_MAX_ATTEMPTS=3)
    for _ in range(3):
        server.error(status, "scripted failure", code=code, headers=headers)
    response = chat(app)
    body = response.get_json()
    assert (response.status_code, body["type"]) == (answered, kind)
    assert len(server.requests) == attempts  # one HTTP request per core attempt: the SDK never retries
    assert "Retry-After" not in response.headers
    assert str(status) not in body["detail"] and "scripted" not in body["detail"]


def test_history_too_long_tells_the_client_what_to_do(openai_app, server):
    server.error(400, "too many tokens", code="context_length_exceeded")
    body = chat(openai_app()).get_json()
    assert body["detail"] == HISTORY_TOO_LONG


@pytest.mark.parametrize(
    "header, expected, tolerance",
    [
        ({"retry-after-ms": "1500"}, 1.5, 0.0),
        ({"retry-after": "7"}, 7.0, 0.0),
        ({"retry-after": "HTTP-DATE+30"}, 30.0, 2.0),  # whole seconds, and the clock moved on
    ],
)
def test_retry_after_sets_the_cores_delay(openai_app, server, clock, header, expected, tolerance):
    if header.get("retry-after") == "HTTP-DATE+30":
        header = {"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)}
    server.error(429, "slow down", code="rate_limit_exceeded", headers=header)
    server.reply("Thanks for waiting.")
    response = chat(openai_app())
    assert response.status_code == 200 and response.get_json()["response"] == "Thanks for waiting."
    [slept] = clock.sleeps
    assert expected - tolerance <= slept <= expected
    assert len(server.requests) == 2


def test_retry_after_beyond_the_deadline_is_passed_on_to_the_client(openai_app, server, clock):
    server.error(429, "slow down", code="rate_limit_exceeded", headers={"retry-after": "90"})
    response = chat(openai_app(LLM_TIMEOUT=60))
    assert response.status_code == 503 and response.headers["Retry-After"] == "90"
    assert len(server.requests) == 1 and clock.sleeps == []


def test_a_hanging_server_is_504_within_the_deadline(openai_app, server):
    for _ in range(3):
        server.reply("too late", delay=2.0)
    app = openai_app(real_clock=True, LLM_TIMEOUT=0.3)
    started = time.monotonic()
    response = chat(app)
    assert response.status_code == 504
    assert time.monotonic() - started < 1.5
    assert len(server.requests) == 1


def test_a_stream_is_retried_until_its_first_piece(openai_app, server):
    app = openai_app()
    server.error(503, "warming up")
    server.stream(["I build ", "boats."])
    state = app.extensions[EXTENSION_KEY]
    with app.test_request_context():
        turn = state.turns.prepare(TurnRequest("stream-session", "What do you do?"))
        assert list(turn.stream()) == ["I build ", "boats."]
    assert len(server.requests) == 2 and all(r.json["stream"] for r in server.requests)


def test_one_client_per_app(openai_app, server, monkeypatch):
    built = []
    real_init = openai.OpenAI.__init__

    def counting_init(self, *args, **kwargs):
        built.append(kwargs.get("max_retries"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(openai.OpenAI, "__init__", counting_init)
    app = openai_app()
    for i in range(3):
        assert chat(app, f"question {i}").status_code == 200
    assert built == [0]
    assert len(server.requests) == 3


def test_the_key_never_reaches_the_client_or_the_log(openai_app, server, caplog):
    server.error(401, f"Incorrect API key provided: {KEY}. You can find your API key at ...", code="invalid_api_key")
    with caplog.at_level(logging.DEBUG):
        response = chat(openai_app())
    assert response.status_code == 502
    assert KEY not in response.get_data(as_text=True)
    assert "openai.AuthenticationError: Error code: 401" in caplog.text  # the chained cause was logged ...
    assert KEY not in caplog.text  # ... with the key scrubbed
