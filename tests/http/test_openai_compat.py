"""The /v1 API: OpenAI's shapes, the persona kept first, errors in OpenAI's envelope, the real SDK."""

from __future__ import annotations

import openai
import pytest
import requests

from tests.doubles.servers import gunicorn
from tests.doubles.sse_client import parse
from twin_server.errors import BackendUnavailable, RateLimited
from twin_server.http.openai.schema import INSTRUCTIONS_PREFACE
from twin_server.turn.prompt import build_system_prompt
from twin_server.types import Persona

PIRATE = "You are a pirate named Jack"


def completion(client, messages, **body):
    return client.post("/v1/chat/completions", json={"model": "test-person", "messages": messages, **body})


def user(text):
    return {"role": "user", "content": text}


def assert_envelope(response, status, kind):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == kind
    return error


# Shapes


def test_models_lists_the_twin_as_one_model(scripted_app):
    client = scripted_app().test_client()
    body = client.get("/v1/models").get_json()
    assert body["object"] == "list"
    [model] = body["data"]
    assert model == {"id": "test-person", "object": "model", "created": model["created"], "owned_by": "twin-server"}
    assert client.get("/v1/models/test-person").get_json() == model
    assert_envelope(client.get("/v1/models/gpt-4o"), 404, "not_found_error")


def test_the_model_id_is_configurable_and_a_slug_by_default(scripted_app, scripted):
    assert scripted_app(MODEL_ID="my-twin").test_client().get("/v1/models").get_json()["data"][0]["id"] == "my-twin"
    scripted.persona.persona = Persona(full_name="Zoë  Ångström-Lee")
    assert scripted_app().test_client().get("/v1/models").get_json()["data"][0]["id"] == "zoe-angstrom-lee"


def test_a_completion_has_openai_shape_and_estimated_usage(scripted_app, scripted):
    body = completion(scripted_app().test_client(), [user("hello")]).get_json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "test-person"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "echo: hello", "refusal": None}, "logprobs": None, "finish_reason": "stop"}
    ]
    prompt = scripted.llm.prompts[0]
    expected_prompt = -(-len(prompt.system) // 4) + 2  # ceil(chars / 4) of the system prompt and "hello"
    assert body["usage"] == {"prompt_tokens": expected_prompt, "completion_tokens": 3, "total_tokens": expected_prompt + 3}


def test_the_persona_comes_first_and_client_instructions_after_it(scripted_app, scripted):
    messages = [
        {"role": "system", "content": PIRATE},
        user("Hi"),
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        {"role": "developer", "content": "Answer briefly."},
        user([{"type": "text", "text": "What is"}, {"type": "text", "text": "your name?"}]),
    ]
    completion(scripted_app().test_client(), messages, temperature=0.3, max_tokens=50, max_completion_tokens=40)
    prompt = scripted.llm.prompts[0]
    persona_prompt = build_system_prompt(scripted.persona.persona)
    assert prompt.system == f"{persona_prompt.rstrip()}\n\n{INSTRUCTIONS_PREFACE}{PIRATE}\n\nAnswer briefly.\n"
    assert [(m.role, m.content) for m in prompt.messages] == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "What is\nyour name?"),
    ]
    assert dict(prompt.options) == {"temperature": 0.3, "max_tokens": 40}


def test_the_clients_history_is_cut_to_the_window(scripted_app, scripted):
    history = [user("a"), {"role": "assistant", "content": "b"}, user("c"), {"role": "assistant", "content": "d"}]
    completion(scripted_app(HISTORY_WINDOW=2).test_client(), [*history, user("e")])
    assert [m.content for m in scripted.llm.prompts[0].messages] == ["c", "d", "e"]


def test_stateless_without_a_session_id(scripted_app, scripted):
    completion(scripted_app().test_client(), [user("a"), {"role": "assistant", "content": "b"}, user("c")])
    assert scripted.store.calls == []


def test_a_session_id_stores_only_the_new_message_and_the_reply(scripted_app, scripted):
    client = scripted_app().test_client()
    messages = [{"role": "system", "content": PIRATE}, user("a"), {"role": "assistant", "content": "b"}, user("c")]
    assert completion(client, messages, session_id="compat-0001").status_code == 200
    stored = scripted.store.sessions["compat-0001"]
    assert [(m.role, m.content, m.complete) for m in stored] == [("user", "c", True), ("assistant", "echo: c", True)]
    assert "load" not in scripted.store.calls


def test_a_stream_is_chunks_ending_with_done(scripted_app, scripted):
    response = completion(scripted_app().test_client(), [user("hi there")], stream=True, stream_options={"include_usage": True})
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    events = parse(response.get_data(as_text=True))
    assert events[-1].data == "[DONE]"
    chunks = [e.json() for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == "echo: hi there"
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert all(c["usage"] is None for c in chunks[:-1])


def test_a_stream_with_a_session_id_is_stored(scripted_app, scripted):
    response = completion(scripted_app().test_client(), [user("hi")], stream=True, session_id="compat-0002")
    assert parse(response.get_data(as_text=True))[-1].data == "[DONE]"
    assert [m.content for m in scripted.store.sessions["compat-0002"]] == ["hi", "echo: hi"]


def test_an_llm_failure_mid_stream_is_an_error_chunk(scripted_app, scripted):
    def step(prompt):
        yield "one "
        raise BackendUnavailable("reset by 10.0.0.7")

    scripted.llm.steps = [step]
    response = completion(scripted_app().test_client(), [user("hi")], stream=True, session_id="compat-0003")
    raw = response.get_data(as_text=True)
    events = parse(raw)
    assert "[DONE]" not in raw and "10.0.0.7" not in raw
    assert events[-1].json() == {
        "error": {
            "message": "The language model is unavailable; try again later.",
            "type": "server_error",
            "param": None,
            "code": "backend_unavailable",
        }
    }
    [_, reply] = scripted.store.sessions["compat-0003"]
    assert (reply.content, reply.complete) == ("one ", False)


# Errors in OpenAI's envelope


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m"}, "messages"),
        ({"messages": [user("hi")]}, "model"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages.0.content"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"model": "m", "messages": [user([{"type": "image_url", "image_url": {"url": "x"}}])]}, "messages.0.content"),
        ({"model": "m", "messages": [user("hi"), {"role": "assistant", "content": "ho"}]}, "messages"),
        ({"model": "m", "messages": [user("   ")]}, "messages"),
        ({"model": "m", "messages": [user("x" * 4001)]}, "messages.0.content"),
        ({"model": "m", "messages": [user("hi")] * 257}, "messages"),
        ({"model": "m", "messages": [user("hi")], "temperature": 3}, "temperature"),
        ({"model": "m", "messages": [user("hi")], "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": [user("hi")], "n": 2}, "n"),
    ],
)
def test_invalid_requests_are_400_in_openais_envelope(scripted_app, scripted, body, param):
    response = scripted_app().test_client().post("/v1/chat/completions", json=body)
    error = assert_envelope(response, 400, "invalid_request_error")
    assert error["param"] == param and error["code"] == "validation_error"
    assert param in error["message"]
    assert scripted.llm.calls == 0


def test_the_total_length_is_bounded(scripted_app):
    client = scripted_app(MAX_MESSAGE_CHARS=10).test_client()
    assert completion(client, [user("x" * 10)] * 32).status_code == 200
    error = assert_envelope(completion(client, [user("x" * 10)] * 33), 400, "invalid_request_error")
    assert "at most 320 characters in all" in error["message"]


def test_a_bad_session_id_is_a_400(scripted_app):
    response = completion(scripted_app().test_client(), [user("hi")], session_id="../etc")
    assert "session_id" in assert_envelope(response, 400, "invalid_request_error")["message"]


def test_non_json_unknown_paths_and_wrong_methods_use_the_envelope(scripted_app):
    client = scripted_app().test_client()
    assert_envelope(client.post("/v1/chat/completions", data="x", content_type="text/plain"), 415, "invalid_request_error")
    assert_envelope(client.get("/v1/nope"), 404, "not_found_error")
    response = client.get("/v1/chat/completions")
    assert_envelope(response, 405, "invalid_request_error")
    assert "POST" in response.headers["Allow"]


def test_server_errors_say_a_fixed_sentence_and_keep_retry_after(scripted_app, scripted):
    client = scripted_app().test_client()
    scripted.llm.steps = [BackendUnavailable("refused by 10.0.0.7")] * 3
    error = assert_envelope(completion(client, [user("hi")]), 503, "server_error")
    assert error["message"] == "The language model is unavailable; try again later."
    scripted.llm.steps = [RateLimited("slow down", retry_after=4)] * 3
    response = completion(client, [user("hi")], stream=True)
    assert_envelope(response, 503, "server_error")
    assert response.headers["Retry-After"] == "4"


def test_the_problem_api_keeps_its_own_envelope(scripted_app):
    response = scripted_app().test_client().post("/chat", json={})
    assert response.mimetype == "application/problem+json"


# The official SDK against a real gunicorn process

KEY = "sk-twin-test-key-2"


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory):
    env = {"TWIN_DATA_DIR": str(tmp_path_factory.mktemp("data")), "TWIN_API_KEYS": f"sk-twin-test-key-1,{KEY}"}
    with gunicorn(env, workers=1, threads=4) as url:
        yield url


@pytest.fixture
def sdk(sdk_server):
    return openai.OpenAI(base_url=sdk_server + "/v1", api_key=KEY, max_retries=0, timeout=10)


def test_the_sdk_lists_the_model(sdk):
    assert [m.id for m in sdk.models.list()] == ["ada-quill"]
    assert sdk.models.retrieve("ada-quill").owned_by == "twin-server"


def test_the_sdk_completes_and_a_system_message_cannot_replace_the_persona(sdk):
    messages = [{"role": "system", "content": PIRATE}, {"role": "user", "content": "What is your name?"}]
    answer = sdk.chat.completions.create(model="ada-quill", messages=messages, temperature=0.2, max_tokens=100)
    text = answer.choices[0].message.content
    assert "Ada Quill" in text and "Jack" not in text
    assert answer.model == "ada-quill" and answer.usage.completion_tokens > 0

    chunks = list(sdk.chat.completions.create(model="ada-quill", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_the_sdk_stores_a_conversation_given_a_session_id(sdk, sdk_server):
    messages = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "Where are you based?"}]
    stream = sdk.chat.completions.create(model="ada-quill", messages=messages, stream=True, extra_body={"session_id": "sdk-session-01"})
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    stored = requests.get(sdk_server + "/conversation/sdk-session-01", timeout=10).json()["messages"]
    assert [(m["role"], m["content"]) for m in stored] == [("user", "Where are you based?"), ("assistant", text)]
    assert "Lisbon" in text


def test_the_sdk_raises_its_own_exceptions(sdk, sdk_server):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="ada-quill", messages=[])
    assert bad.value.status_code == 400 and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-4o")
    wrong = openai.OpenAI(base_url=sdk_server + "/v1", api_key="sk-wrong", max_retries=0, timeout=10)
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.models.list()
    assert denied.value.request_id  # our X-Request-ID, read by the SDK
    assert "sk-wrong" not in str(denied.value.body)
