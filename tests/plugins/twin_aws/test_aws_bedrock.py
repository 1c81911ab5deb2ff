"""The Bedrock backend through botocore's Stubber (moto has no Converse), and a real silent socket."""

import contextlib
import socket
import threading
from datetime import datetime, timezone

import pytest

from twin_server.turn.turn import TurnRequest
from botocore.exceptions import EventStreamError
from botocore.stub import Stubber
from hypothesis import given, strategies as st

from tests.doubles.moto_server import use_test_credentials
from tests.doubles.scripted import SCRIPTED_CONFIG
from twin_aws.bedrock import BedrockLLM, converse_messages, supports_prompt_cache
from twin_aws.bedrock_tools import tool_config
from twin_server.owner.toolbox import TOOLS
from twin_server.app import create_app
from twin_server.errors import RateLimited, StartupError
from twin_server.turn.prompt import build_system_prompt
from twin_server.types import Message, Prompt

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def reply(text):
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 3, "totalTokens": 13},
        "metrics": {"latencyMs": 5},
    }


class Events(dict):
    """converse_stream's "stream" for the Stubber, which accepts only a dict there.

    Its validator iterates the dict, so the events appear only once ``add_stream``
    has armed it; then it iterates like botocore's EventStream (an exception
    in the list is raised where it stands).
    """

    def __init__(self, *events):
        super().__init__()
        self.events, self.armed, self.closed = events, False, False

    def __iter__(self):
        if not self.armed:
            return iter(())
        return self._events()

    def _events(self):
        for event in self.events:
            if isinstance(event, BaseException):
                raise event
            yield event

    def close(self):
        self.closed = True


def add_stream(stub, *events):
    stream = Events(*events)
    stub.add_response("converse_stream", {"stream": stream})
    stream.armed = True
    return stream


def delta(text):
    return {"contentBlockDelta": {"delta": {"text": text}, "contentBlockIndex": 0}}


@pytest.fixture
def aws_offline(monkeypatch):
    use_test_credentials(monkeypatch)


@pytest.fixture
def build(aws_offline, scripted, clock):
    def build(**config):
        return create_app(
            {**SCRIPTED_CONFIG, "LLM": "bedrock", "BEDROCK_MODEL_ID": CLAUDE, **config},
            plugins=[scripted],
            retry_options={"clock": clock, "sleep": clock.sleep},
        )

    return build


@pytest.fixture
def app(build):
    return build()


@pytest.fixture
def stub(app):
    with Stubber(app.extensions["twin_server"].backends.llm.client) as stubber:
        yield stubber


def chat(app, message="What do you do?", session="bedrock-session"):
    return app.test_client().post("/chat", json={"message": message, "session_id": session})


def test_a_reply_and_the_exact_request(app, stub, scripted):
    # A stored turn whose reply was never saved: two user messages in a row.
    scripted.store.sessions["bedrock-session"] = [
        Message("assistant", "a greeting nobody asked for", T0),
        Message("user", "Hello", T0),
        Message("assistant", "Hi! I'm Test Person.", T0),
        Message("user", "Are you there?", T0),
    ]
    system = build_system_prompt(scripted.persona.persona)
    stub.add_response("converse", reply("I test things."), {
        "modelId": CLAUDE,
        "system": [{"text": system}, {"cachePoint": {"type": "default"}}],
        "messages": [
            {"role": "user", "content": [{"text": "Hello"}]},
            {"role": "assistant", "content": [{"text": "Hi! I'm Test Person."}]},
            {"role": "user", "content": [{"text": "Are you there?\n\nWhat do you do?"}]},
        ],
        "inferenceConfig": {"maxTokens": 1024},
        "toolConfig": tool_config(TOOLS),
    })
    response = chat(app)
    stub.assert_no_pending_responses()
    assert response.status_code == 200
    assert response.get_json()["response"] == "I test things."
    assert [m.content for m in scripted.store.sessions["bedrock-session"][-2:]] == ["What do you do?", "I test things."]


def test_inference_settings_and_prompt_options(build):
    app = build(BEDROCK_MAX_TOKENS=300, BEDROCK_TEMPERATURE=0.2, BEDROCK_TOP_P=0.9, BEDROCK_PROMPT_CACHE="off")
    llm = app.extensions["twin_server"].backends.llm.backend
    prompt = Prompt("You are Ada.", (Message("user", "hi", T0),), persona=None)
    request = llm.request(prompt)
    assert request["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.2, "topP": 0.9}
    assert request["system"] == [{"text": "You are Ada."}]
    overridden = llm.request(Prompt("s", prompt.messages, None, options={"temperature": 0.0, "max_tokens": 50}))
    assert overridden["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.0, "topP": 0.9}


@pytest.mark.parametrize("model, setting, cached", [
    (CLAUDE, "auto", True),
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "auto", True),
    ("amazon.nova-lite-v1:0", "auto", True),
    ("meta.llama3-70b-instruct-v1:0", "auto", False),
    ("anthropic.claude-v2", "auto", False),
    ("meta.llama3-70b-instruct-v1:0", "on", True),
    (CLAUDE, "off", False),
])
def test_the_persona_is_marked_cacheable_where_supported(build, model, setting, cached):
    llm = build(BEDROCK_MODEL_ID=model, BEDROCK_PROMPT_CACHE=setting).extensions["twin_server"].backends.llm
    system = llm.request(Prompt("persona", (Message("user", "hi", T0),), None))["system"]
    assert (system[-1] == {"cachePoint": {"type": "default"}}) is cached
    if setting == "auto":
        assert supports_prompt_cache(model) is cached


def test_a_streamed_reply(app, stub, scripted):
    events = add_stream(stub, {"messageStart": {"role": "assistant"}}, delta("I "), delta("test "), delta("things."),
                        {"messageStop": {"stopReason": "end_turn"}})
    state = app.extensions["twin_server"]
    turn = state.turns.prepare(TurnRequest("stream-session", "What do you do?"))
    pieces = list(turn.stream())
    assert pieces == ["I ", "test ", "things."]
    assert events.closed


def test_a_throttled_stream_is_retried_until_its_first_piece(app, stub, clock):
    add_stream(stub, {"throttlingException": {"message": "slow down"}})
    add_stream(stub, delta("fine"))
    state = app.extensions["twin_server"]
    assert list(state.turns.prepare(TurnRequest("stream-session", "hi")).stream()) == ["fine"]
    assert len(clock.sleeps) == 1


def test_an_error_after_the_first_piece_reaches_the_caller(app, stub):
    broken = EventStreamError({"Error": {"Code": "throttlingException", "Message": "slow"}}, "ConverseStream")
    add_stream(stub, delta("I "), broken)
    state = app.extensions["twin_server"]
    pieces = iter(state.turns.prepare(TurnRequest("stream-session", "hi")).stream())
    assert next(pieces) == "I "
    with pytest.raises(RateLimited):
        next(pieces)


@pytest.mark.parametrize("code, message, aws_status, status, title, attempts", [
    ("ThrottlingException", "Too many requests", 429, 503, "Service busy", 3),
    ("ServiceUnavailableException", "unavailable", 503, 503, "Service unavailable", 3),
    ("ModelNotReadyException", "not ready", 429, 503, "Service unavailable", 3),
    ("InternalServerException", "oops", 500, 503, "Service unavailable", 3),
    ("ModelTimeoutException", "model took too long", 408, 504, "Timed out", 3),
    ("ValidationException", "Input is too long for requested model.", 400, 400, "Conversation too long", 1),
    ("ValidationException", "messages: roles must alternate", 400, 502, "Backend refused the request", 1),
    ("AccessDeniedException", "no model access", 403, 500, "Server misconfigured", 1),
    ("UnrecognizedClientException", "The security token included in the request is invalid", 403, 500,
     "Server misconfigured", 1),
    ("ResourceNotFoundException", "no such model", 404, 500, "Server misconfigured", 1),
    ("ModelErrorException", "the model failed", 424, 502, "Backend refused the request", 1),
])
def test_each_error_through_the_api(app, stub, code, message, aws_status, status, title, attempts):
    for _ in range(attempts):
        stub.add_client_error("converse", code, f"{message} [said by AWS]", aws_status)
    response = chat(app)
    stub.assert_no_pending_responses()
    assert response.status_code == status
    doc = response.get_json()
    assert doc["title"] == title
    if status >= 500:
        assert doc["operation"] == "llm" and "said by AWS" not in response.get_data(as_text=True)
    assert status not in (401, 403)


@contextlib.contextmanager
def silent_server():
    """A TCP server that accepts connections and never answers; yields (url, accepted connections)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_read_timeout_is_a_504_after_the_core_retries(build, monkeypatch):
    with silent_server() as (url, accepted):
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
        app = build(LLM_TIMEOUT=0.2, RETRY_LLM_INITIAL_DELAY=0.001)  # backoff short enough to fit the deadline
        assert app.extensions["twin_server"].backends.llm.client.meta.config.read_timeout == 0.2
        response = chat(app)
        assert response.status_code == 504
        assert len(accepted) == 3


def test_a_refused_connection_is_a_503(build, monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed.getsockname()[1]}")
        response = chat(build())
    assert response.status_code == 503 and response.get_json()["operation"] == "llm"


def test_settings_are_checked_at_startup(aws_offline, scripted):
    with pytest.raises(StartupError) as raised:
        create_app({**SCRIPTED_CONFIG, "LLM": "bedrock"}, plugins=[scripted])
    assert "TWIN_BEDROCK_MODEL_ID" in str(raised.value)
    for key, value in [("BEDROCK_TEMPERATURE", 1.5), ("BEDROCK_MAX_TOKENS", 0), ("BEDROCK_PROMPT_CACHE", "maybe")]:
        with pytest.raises(StartupError, match=f"TWIN_{key}"):
            create_app({**SCRIPTED_CONFIG, "LLM": "bedrock", "BEDROCK_MODEL_ID": CLAUDE, key: value}, plugins=[scripted])


# -- Converse's message shape -------------------------------------------------------


def msg(role, content):
    return Message(role, content, T0)


def test_consecutive_messages_of_one_role_are_merged_and_a_leading_reply_dropped():
    folded = converse_messages([
        msg("assistant", "orphan reply"), msg("user", "one"), msg("user", "two"), msg("assistant", "   "),
        msg("assistant", "reply"), msg("user", "three"),
    ])
    assert folded == [
        {"role": "user", "content": [{"text": "one\n\ntwo"}]},
        {"role": "assistant", "content": [{"text": "reply"}]},
        {"role": "user", "content": [{"text": "three"}]},
    ]


@given(st.lists(st.tuples(st.sampled_from(["user", "assistant"]), st.text(min_size=0, max_size=5)), max_size=12))
def test_converse_messages_always_alternate_from_a_user(pairs):
    messages = [msg(role, content) for role, content in pairs]
    folded = converse_messages(messages)
    roles = [m["role"] for m in folded]
    assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2)
    assert all(m["content"][0]["text"].strip() for m in folded)
    first_user = next((i for i, m in enumerate(messages) if m.role == "user" and m.content.strip()), None)
    expected = [] if first_user is None else [m.content for m in messages[first_user:] if m.content.strip()]
    assert "\n\n".join(m["content"][0]["text"] for m in folded) == "\n\n".join(expected)


def test_a_request_needs_a_user_message_last():
    from twin_server.errors import BackendError

    llm = BedrockLLM(client=None, model_id=CLAUDE, inference={"maxTokens": 5}, prompt_cache=False)
    with pytest.raises(BackendError):
        llm.request(Prompt("s", (msg("user", "hi"), msg("assistant", "hello")), None))


def test_token_usage_is_reported_for_replies_and_streams(app, stub):
    from twin_server.telemetry import usage as accounting

    state = app.extensions["twin_server"]
    stub.add_response("converse", reply("I test things."))
    add_stream(stub, delta("fine"), {"messageStop": {"stopReason": "end_turn"}},
               {"metadata": {"usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9}, "metrics": {"latencyMs": 1}}})
    record = accounting.start("bedrock-usage")
    try:
        state.turns.run(TurnRequest("usage-session", "What do you do?"))
        assert (record.input_tokens, record.output_tokens) == (10, 3)
        turn = state.turns.prepare(TurnRequest("usage-session", "And then?"))
        assert list(turn.stream()) == ["fine"]
    finally:
        accounting.stop()
    assert (record.input_tokens, record.output_tokens) == (17, 5)
