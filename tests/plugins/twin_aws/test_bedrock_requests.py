"""The Bedrock client skips botocore's per-call parameter validation; every request shape we build passes it here."""

import pytest
from botocore.validate import validate_parameters

from tests.doubles.bedrock_stub import answer_every_call
from tests.doubles.moto_server import use_test_credentials
from twin_aws.bedrock import BedrockLLM
from twin_server.owner.toolbox import TOOLS
from twin_server.replies import ToolCall, ToolResult, ToolRound
from twin_server.types import Message, Persona, Prompt

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
HISTORY = (Message("assistant", "Hi!"), Message("user", "Who are you?"), Message("user", "And what do you do?"))
ROUND = ToolRound("Let me note that.", (ToolCall("call-1", "record_contact", {"email": "a@b.co"}),),
                  (ToolResult("call-1", '{"recorded": true}'),))
PROMPTS = {
    "plain": Prompt(system="", messages=HISTORY, persona=Persona(full_name="T")),
    "persona, cached": Prompt(system="You are T.", messages=HISTORY, persona=Persona(full_name="T")),
    "options": Prompt(system="You are T.", messages=HISTORY, persona=Persona(full_name="T"),
                      options={"max_tokens": 5, "temperature": 0.5, "top_p": 0.9}),
    "tools and a round": Prompt(system="You are T.", messages=HISTORY, persona=Persona(full_name="T"),
                                tools=tuple(TOOLS), tool_rounds=(ROUND, ROUND)),
}


@pytest.fixture
def llm(monkeypatch):
    use_test_credentials(monkeypatch)
    return BedrockLLM.from_config({"BEDROCK_MODEL_ID": CLAUDE, "BEDROCK_TEMPERATURE": 0.2, "BEDROCK_TOP_P": 0.8})


def test_the_converse_client_does_not_validate_each_call(llm):
    answer_every_call(llm.client, text="Fine.")
    # maxTokens below its model minimum of 1: a validating client refuses it before sending
    assert llm.client.converse(modelId=CLAUDE, messages=[], inferenceConfig={"maxTokens": 0})["output"]
    assert llm.complete(PROMPTS["tools and a round"]) == "Fine."
    assert "".join(llm.stream(PROMPTS["options"])) == "Fine."


@pytest.mark.parametrize("name", PROMPTS)
@pytest.mark.parametrize("operation", ["Converse", "ConverseStream"])
def test_every_request_we_build_is_valid_for_botocore(llm, name, operation):
    shape = llm.client.meta.service_model.operation_model(operation).input_shape
    request = llm.request(PROMPTS[name])
    validate_parameters(request, shape)  # raises ParamValidationError, naming the field, when it is not
    assert request["messages"][0]["role"] == "user"
