"""The owner's tools in Bedrock Converse through botocore's Stubber: toolUse / toolResult, streamed too; maxTokens."""

import json

import pytest
from botocore.stub import ANY, Stubber

from tests.doubles.moto_server import use_test_credentials
from tests.doubles.scripted import SCRIPTED_CONFIG, ScriptedPlugin
from tests.doubles.sse_client import parse
from twin_aws.bedrock_tools import tool_config
from twin_server.app import create_app
from twin_server.owner.toolbox import TOOLS
from twin_server.types import Message, Prompt

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
VISITOR = "I'm Jane Doe; you can write to jane@example.com"
CONTACT = {"email": "jane@example.com", "name": "Jane Doe"}


class Events(dict):
    """converse_stream's "stream" for the Stubber (a dict for its validator, iterated once armed)."""

    def __init__(self, *events):
        super().__init__()
        self.events, self.armed = events, False

    def __iter__(self):
        return iter(self.events if self.armed else ())


def add_stream(stub, *events):
    stream = Events(*events)
    stub.add_response("converse_stream", {"stream": stream})
    stream.armed = True


def reply(*content, stop="end_turn"):
    return {"output": {"message": {"role": "assistant", "content": list(content)}}, "stopReason": stop,
            "usage": {"inputTokens": 10, "outputTokens": 3, "totalTokens": 13}, "metrics": {"latencyMs": 5}}


@pytest.fixture
def build(monkeypatch, tmp_path, clock):
    use_test_credentials(monkeypatch)

    def build(**config):
        return create_app({**SCRIPTED_CONFIG, "LLM": "bedrock", "BEDROCK_MODEL_ID": CLAUDE,
                           "DATA_DIR": str(tmp_path), **config},
                          plugins=[ScriptedPlugin()], retry_options={"clock": clock, "sleep": clock.sleep})

    return build


def stubbed(app):
    return Stubber(app.extensions["twin_server"].backends.llm.client)


def owner_of(app):
    return app.extensions["twin_server"].owner


def test_tool_use_is_run_and_its_result_sent_back(build):
    app = build()
    use = {"toolUse": {"toolUseId": "tooluse_1", "name": "record_contact", "input": CONTACT}}
    with stubbed(app) as stub:
        stub.add_response("converse", reply({"text": "Let me note that."}, use, stop="tool_use"),
                          {"modelId": CLAUDE, "system": ANY, "inferenceConfig": {"maxTokens": 1024},
                           "toolConfig": tool_config(TOOLS),
                           "messages": [{"role": "user", "content": [{"text": VISITOR}]}]})
        stub.add_response("converse", reply({"text": "Thanks, Jane!"}), {
            "modelId": CLAUDE, "system": ANY, "inferenceConfig": {"maxTokens": 1024}, "toolConfig": tool_config(TOOLS),
            "messages": [
                {"role": "user", "content": [{"text": VISITOR}]},
                {"role": "assistant", "content": [{"text": "Let me note that."}, use]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1",
                                                             "content": [{"text": '{"recorded": true}'}]}}]},
            ]})
        response = app.test_client().post("/chat", json={"message": VISITOR, "session_id": "bedrock-tools-1"})
        stub.assert_no_pending_responses()
    assert response.get_json()["response"] == "Let me note that.\n\nThanks, Jane!"
    assert [(x.email, x.name) for x in owner_of(app).leads()] == [("jane@example.com", "Jane Doe")]


def test_streamed_tool_use_is_put_together_from_its_deltas(build):
    app = build()
    arguments = json.dumps({"question": "What is your salary?"})
    with stubbed(app) as stub:
        add_stream(stub,
                   {"messageStart": {"role": "assistant"}},
                   {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "t9", "name": "record_unanswered_question"}},
                                          "contentBlockIndex": 0}},
                   *({"contentBlockDelta": {"delta": {"toolUse": {"input": arguments[i:i + 7]}}, "contentBlockIndex": 0}}
                     for i in range(0, len(arguments), 7)),
                   {"contentBlockStop": {"contentBlockIndex": 0}},
                   {"messageStop": {"stopReason": "tool_use"}})
        add_stream(stub,
                   {"contentBlockDelta": {"delta": {"text": "I'd rather "}, "contentBlockIndex": 0}},
                   {"contentBlockDelta": {"delta": {"text": "not say."}, "contentBlockIndex": 0}},
                   {"messageStop": {"stopReason": "end_turn"}})
        response = app.test_client().post("/chat/stream", json={"message": "What is your salary?",
                                                                "session_id": "bedrock-tools-2"})
        stub.assert_no_pending_responses()
    events = parse(response.get_data(as_text=True))
    assert "".join(e.json()["text"] for e in events if e.event == "delta") == "I'd rather not say."
    [question] = owner_of(app).questions()
    assert question.question == "What is your salary?" and question.session_ids == ("bedrock-tools-2",)


def test_the_operators_max_tokens_is_a_ceiling(build):
    llm = build(BEDROCK_MAX_TOKENS=300).extensions["twin_server"].backends.llm.backend
    messages = (Message("user", "hi"),)
    assert llm.request(Prompt("s", messages, None, options={"max_tokens": 999999999}))["inferenceConfig"] == {
        "maxTokens": 300}
    assert llm.request(Prompt("s", messages, None, options={"max_tokens": 50}))["inferenceConfig"] == {
        "maxTokens": 50}


def test_a_reply_stopped_at_max_tokens_says_finish_reason_length_on_v1(build):
    app = build()
    with stubbed(app) as stub:
        stub.add_response("converse", reply({"text": "I was"}, stop="max_tokens"),
                          {"modelId": CLAUDE, "system": ANY, "messages": ANY, "toolConfig": ANY,
                           "inferenceConfig": {"maxTokens": 1024}})
        response = app.test_client().post("/v1/chat/completions", json={
            "model": "m", "max_tokens": 999999999, "messages": [{"role": "user", "content": "Tell me everything"}]})
        stub.assert_no_pending_responses()
    assert response.get_json()["choices"][0]["finish_reason"] == "length"
