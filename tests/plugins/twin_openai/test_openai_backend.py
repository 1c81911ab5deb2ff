"""The ``openai`` backend through the real SDK, over real HTTP, against tests/fake_openai.py."""

from __future__ import annotations

import threading
import time

import openai
import pytest

import twin_openai
from tests.doubles.fake_openai import FakeOpenAI
from twin_openai.backend import OpenAIBackend
from twin_server import BackendContext
from twin_server.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigurationError
from twin_server.types import Message, Persona, Prompt

KEY = "sk-test-backend-0123456789"
HISTORY = (
    Message("user", "Hi, who are you?"),
    Message("assistant", "I'm Test Person."),
    Message("user", "What do you do?"),
)


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def build(server: FakeOpenAI, **config) -> OpenAIBackend:
    """The backend as the app builds it: through the plugin's registered factory."""
    factories = {}
    twin_openai.register_llm_backends(register=factories.__setitem__)
    context = BackendContext(
        config={"OPENAI_BASE_URL": server.base_url, "LLM_TIMEOUT": 60.0, **config},
        secret={"OPENAI_API_KEY": KEY}.__getitem__,
        name="openai",
        kind="llm",
    )
    return factories["openai"](context)


def prompt(*, timeout: float | None = 30.0, options=None, system: str = "You are Test Person.") -> Prompt:
    return Prompt(system=system, messages=HISTORY, persona=Persona(full_name="Test Person"),
                  timeout=timeout, options=options or {})


def test_complete_sends_the_exact_request_and_returns_the_reply(server):
    server.reply("I build boats.")
    backend = build(server, OPENAI_MODEL="gpt-test", OPENAI_TEMPERATURE=0.3, OPENAI_MAX_TOKENS=200)
    assert backend.complete(prompt()) == "I build boats."
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["x-stainless-retry-count"] == "0"
    assert request.json == {
        "model": "gpt-test",
        "temperature": 0.3,
        "max_tokens": 200,
        "messages": [
            {"role": "system", "content": "You are Test Person."},
            {"role": "user", "content": "Hi, who are you?"},
            {"role": "assistant", "content": "I'm Test Person."},
            {"role": "user", "content": "What do you do?"},
        ],
    }


def test_defaults_send_only_the_model_and_messages(server):
    backend = build(server)
    assert backend.complete(prompt(system="")) == "Hello from the fake model."
    body = server.requests[0].json
    assert body["model"] == "gpt-4o-mini"
    assert set(body) == {"model", "messages"}
    assert body["messages"][0] == {"role": "user", "content": "Hi, who are you?"}


def test_prompt_options_override_the_settings_for_one_call(server):
    backend = build(server, OPENAI_TEMPERATURE=0.3, OPENAI_MAX_TOKENS=200)
    backend.complete(prompt(options={"temperature": 0.0, "max_tokens": 5}))
    backend.complete(prompt())
    first, second = (r.json for r in server.requests)
    assert (first["temperature"], first["max_tokens"]) == (0.0, 5)
    assert (second["temperature"], second["max_tokens"]) == (0.3, 200)


def test_organization_and_project_are_sent(server):
    build(server, OPENAI_ORGANIZATION="org-twin", OPENAI_PROJECT="proj_twin").complete(prompt())
    headers = server.requests[0].headers
    assert (headers["openai-organization"], headers["openai-project"]) == ("org-twin", "proj_twin")


@pytest.mark.parametrize("left, llm_timeout, sent", [(12.5, 60.0, "12.5"), (500.0, 60.0, "60.0"), (None, 45, "45.0")])
def test_each_call_is_bounded_by_the_time_left_and_the_llm_timeout(server, left, llm_timeout, sent):
    build(server, LLM_TIMEOUT=llm_timeout).complete(prompt(timeout=left))
    assert server.requests[0].headers["x-stainless-read-timeout"] == sent


def test_a_slow_server_times_out_after_the_time_left(server):
    server.reply("too late", delay=1.5)
    backend = build(server)
    started = time.monotonic()
    with pytest.raises(BackendTimeout) as caught:
        backend.complete(prompt(timeout=0.2))
    assert time.monotonic() - started < 1.2
    assert isinstance(caught.value.__cause__, openai.APITimeoutError)
    assert len(server.requests) == 1


def test_no_time_left_sends_nothing(server):
    with pytest.raises(BackendTimeout):
        build(server).complete(prompt(timeout=0.0))
    assert server.requests == []


def test_stream_yields_each_delta_as_it_arrives(server):
    held = threading.Event()
    server.stream(["I build ", "small ", "boats."], hold=held)
    pieces = build(server).stream(prompt())
    started = time.monotonic()
    assert next(pieces) == "I build "
    assert time.monotonic() - started < 5  # the server holds the rest back for 10 s: nothing was buffered
    held.set()
    assert list(pieces) == ["small ", "boats."]
    body = server.requests[0].json
    assert body["stream"] is True and body["messages"][-1] == {"role": "user", "content": "What do you do?"}


def test_reply_streams_word_by_word_when_asked(server):
    server.reply("Hello there friend")
    assert list(build(server).stream(prompt())) == ["Hello ", "there ", "friend"]


def test_an_error_event_mid_stream_is_transient(server):
    server.stream(["Half a "], error={"message": "overloaded", "type": "server_error"})
    pieces = build(server).stream(prompt())
    assert next(pieces) == "Half a "
    with pytest.raises(BackendUnavailable) as caught:
        next(pieces)
    assert isinstance(caught.value.__cause__, openai.APIError)


def test_the_stream_request_is_made_only_when_iterated(server):
    pieces = build(server).stream(prompt())
    assert server.requests == []
    assert "".join(pieces) == "Hello from the fake model."
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body, content_type",
    [
        ("<html>maintenance</html>", "text/html"),
        ({"choices": []}, None),
        ("not json{", "application/json"),
        ({"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}]}, None),
    ],
)
def test_a_200_that_is_not_a_completion_is_a_backend_error(server, body, content_type):
    server.respond(200, body, content_type=content_type)
    with pytest.raises(BackendError) as caught:
        build(server).complete(prompt())
    assert type(caught.value) is BackendError


@pytest.mark.parametrize(
    "body, content_type",
    [("<html>maintenance</html>", "text/html"), ("data: not json\n\n", "text/event-stream"), (None, None)],
)
def test_a_stream_without_text_is_a_backend_error(server, body, content_type):
    if body is None:
        server.stream([])
    else:
        server.respond(200, body, content_type=content_type)
    with pytest.raises(BackendError) as caught:
        list(build(server).stream(prompt()))
    assert type(caught.value) is BackendError


def test_one_client_serves_every_call(server, monkeypatch):
    backend = build(server)
    monkeypatch.setattr(openai.OpenAI, "__init__", lambda *a, **k: pytest.fail("a client was built per call"))
    monkeypatch.setattr(openai.OpenAI, "with_options", lambda *a, **k: pytest.fail("a client was copied per call"))
    for _ in range(3):
        backend.complete(prompt())
    assert list(backend.stream(prompt()))
    assert backend.client.max_retries == 0
    assert len(server.requests) == 4


@pytest.mark.parametrize(
    "config, named",
    [
        ({"OPENAI_TEMPERATURE": 3}, "TWIN_OPENAI_TEMPERATURE"),
        ({"OPENAI_TEMPERATURE": "warm"}, "TWIN_OPENAI_TEMPERATURE"),
        ({"OPENAI_MAX_TOKENS": 0}, "TWIN_OPENAI_MAX_TOKENS"),
        ({"OPENAI_MAX_TOKENS": 2.5}, "TWIN_OPENAI_MAX_TOKENS"),
        ({"OPENAI_BASE_URL": "localhost:11434"}, "TWIN_OPENAI_BASE_URL"),
    ],
)
def test_bad_settings_are_refused_by_name(server, config, named):
    with pytest.raises(ConfigurationError, match=named):
        build(server, **config)


def test_the_backend_repr_shows_no_key(server):
    assert KEY not in repr(build(server))


def test_token_usage_is_reported_to_the_request_record(server):
    from twin_server.telemetry import usage as accounting

    server.reply("I build small boats.")  # the fake counts 1 prompt token and one per word
    backend = build(server)
    record = accounting.start("usage-test")
    try:
        backend.complete(prompt())
        assert (record.input_tokens, record.output_tokens) == (1, 4)
        server.reply("Two words.")
        "".join(backend.stream(prompt()))
    finally:
        accounting.stop()
    streamed = server.requests[-1].json.get("stream")
    assert streamed is True
    assert record.input_tokens >= 1 and record.output_tokens >= 4
