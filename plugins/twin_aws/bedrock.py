"""The Bedrock language model, through the Converse API (``converse`` and ``converse_stream``).

The persona's system prompt goes in Converse's ``system`` field, followed by a
``cachePoint`` where the model supports prompt caching, so the long and
unchanging persona is not paid for in full on every turn. Converse wants
messages alternating user/assistant and starting with a user message; the
history is folded into that shape (``converse_messages``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from twin_aws.bedrock_tools import StreamedUses, calls_of, round_messages, tool_config
from twin_aws.clients import make_client, operation_timeout, require_boto3, translate, translated
from twin_server import Message, Prompt, Reply, report_usage, Settings
from twin_server.errors import BackendError, BackendTimeout, ConfigurationError, HistoryTooLong, TwinError

__all__ = ["BedrockLLM", "converse_messages", "supports_prompt_cache"]

DEFAULT_MAX_TOKENS = 1024

#: Model ids (plain, cross-region "us."/"eu." profiles, or ARNs) known to accept a cachePoint.
_CACHEABLE = re.compile(
    r"anthropic\.claude-(3-5-haiku|3-7-sonnet|(sonnet|opus|haiku)-4)|amazon\.nova-(micro|lite|pro|premier)"
)
_TOO_LONG = re.compile(r"too long|too many (input )?tokens|context (length|window)|input length", re.IGNORECASE)
#: Prompt.options keys and the inferenceConfig field each overrides.
_OPTIONS = {"max_tokens": "maxTokens", "temperature": "temperature", "top_p": "topP"}


def supports_prompt_cache(model_id: str) -> bool:
    return _CACHEABLE.search(model_id) is not None


def converse_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Converse's messages: user first, roles alternating, no empty text.

    A leading assistant message is dropped, and consecutive messages of one
    role (e.g. a stored turn whose reply was never saved) are merged.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        if not message.content.strip() or (not out and message.role != "user"):
            continue
        if out and out[-1]["role"] == message.role:
            block = out[-1]["content"][0]
            block["text"] = f"{block['text']}\n\n{message.content}"
        else:
            out.append({"role": message.role, "content": [{"text": message.content}]})
    return out


class BedrockLLM:
    """An LLMBackend over one Bedrock model. ``client`` is the bedrock-runtime client.

    ``supports_tools`` (``TWIN_BEDROCK_TOOLS``, default on): the owner's tools go in ``toolConfig``.
    """

    #: The core may ask ``complete`` for a conversation's rolling summary.
    summarises = True

    def __init__(self, client: Any, model_id: str, inference: Mapping[str, Any], prompt_cache: bool,
                 tools: bool = True) -> None:
        self.client, self.model_id, self.prompt_cache = client, model_id, prompt_cache
        self.inference = dict(inference)
        self.supports_tools = tools

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "BedrockLLM":
        settings = Settings(config)
        require_boto3("llm backend 'bedrock'")
        model_id = (settings.get_str("BEDROCK_MODEL_ID", "") or "").strip()
        if not model_id:
            raise ConfigurationError(
                "llm backend 'bedrock' needs TWIN_BEDROCK_MODEL_ID, e.g. anthropic.claude-3-5-haiku-20241022-v1:0"
            )
        inference: dict[str, Any] = {
            "maxTokens": settings.get_int("BEDROCK_MAX_TOKENS", DEFAULT_MAX_TOKENS, minimum=1)
        }
        for key, field in (("BEDROCK_TEMPERATURE", "temperature"), ("BEDROCK_TOP_P", "topP")):
            value = settings.get_float(key, None, minimum=0)
            if value is not None:
                if value > 1:
                    raise ConfigurationError(f"TWIN_{key} must be from 0 to 1, not {value:g}")
                inference[field] = value
        tools = settings.get_bool("BEDROCK_TOOLS", True)
        # No per-call parameter validation: ``request`` builds every field from checked settings, the
        # core's Prompt (text, options the API schema checked) and the owner's tools, and a test runs
        # botocore's validator over each shape of request it makes (tests/plugins/twin_aws/test_bedrock_requests.py).
        client = make_client("bedrock-runtime", operation_timeout(config, "llm"), what="llm backend 'bedrock'",
                             validate_parameters=False)
        return cls(client, model_id, inference, _prompt_cache(config, model_id), tools)

    def __repr__(self) -> str:
        return f"BedrockLLM({self.model_id!r})"

    def request(self, prompt: Prompt) -> dict[str, Any]:
        """The keyword arguments of ``converse`` / ``converse_stream`` for ``prompt``."""
        messages = converse_messages(prompt.messages)
        if not messages or messages[-1]["role"] != "user":
            raise BackendError("a Bedrock conversation must end with the user's message")
        messages += round_messages(prompt.tool_rounds)
        inference = dict(self.inference)
        for option, field in _OPTIONS.items():
            if prompt.options.get(option) is not None:
                inference[field] = prompt.options[option]
        # TWIN_BEDROCK_MAX_TOKENS is a ceiling: a caller may ask for less, never for more.
        inference["maxTokens"] = min(inference["maxTokens"], self.inference["maxTokens"])
        request: dict[str, Any] = {"modelId": self.model_id, "messages": messages, "inferenceConfig": inference}
        if prompt.tools:
            request["toolConfig"] = tool_config(prompt.tools)
        if prompt.system.strip():
            system: list[dict[str, Any]] = [{"text": prompt.system}]
            if self.prompt_cache:
                system.append({"cachePoint": {"type": "default"}})
            request["system"] = system
        return request

    def complete(self, prompt: Prompt) -> Reply:
        _check_deadline(prompt)
        with translated(f"Bedrock Converse with {self.model_id}", _special):
            response = self.client.converse(**self.request(prompt))
        _report(response)
        blocks = ((response.get("output") or {}).get("message") or {}).get("content") or []
        text = "".join(block.get("text", "") for block in blocks)
        calls = calls_of(blocks) if prompt.tools else ()
        return Reply(text, tool_calls=calls, finish_reason=_finish(response.get("stopReason")))

    def stream(self, prompt: Prompt) -> Iterator[str]:
        _check_deadline(prompt)
        action = f"Bedrock ConverseStream with {self.model_id}"
        with translated(action, _special):
            events = self.client.converse_stream(**self.request(prompt))["stream"]
        uses, stop = StreamedUses(), None
        try:
            for event in _translated_events(events, action):
                _report(event.get("metadata"))
                text = ((event.get("contentBlockDelta") or {}).get("delta") or {}).get("text")
                if text:
                    yield text
                uses.add(event)
                stop = (event.get("messageStop") or {}).get("stopReason") or stop
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # the caller may stop reading early; free the connection
        calls = uses.calls() if prompt.tools else ()
        if calls or _finish(stop) != "stop":
            yield Reply("", tool_calls=calls, finish_reason=_finish(stop))


def _finish(stop_reason: Any) -> str:
    return "length" if stop_reason == "max_tokens" else "stop"


def _report(body: Any) -> None:
    """Converse's token counts (``usage`` of a reply, or of a stream's ``metadata`` event)."""
    usage = body.get("usage") if isinstance(body, Mapping) else None
    if isinstance(usage, Mapping):
        report_usage(input_tokens=usage.get("inputTokens"), output_tokens=usage.get("outputTokens"))


def _translated_events(events: Any, action: str) -> Iterator[Mapping[str, Any]]:
    """The stream's events; an error event or a broken stream becomes a core error."""
    iterator = iter(events)
    while True:
        with translated(action, _special):
            try:
                event = next(iterator)
            except StopIteration:
                return
        for key, body in event.items():
            if key.endswith("Exception"):
                raise _stream_error(key, body, action)
        yield event


def _stream_error(key: str, body: Any, action: str) -> TwinError:
    """An exception event inside the stream, translated as if Bedrock had raised it."""
    from botocore.exceptions import ClientError

    code = key[:1].upper() + key[1:]
    message = body.get("message", "") if isinstance(body, Mapping) else ""
    return translate(ClientError({"Error": {"Code": code, "Message": message}}, "ConverseStream"), action, _special)


def _special(code: str, exc: Any) -> TwinError | None:
    message = str((exc.response.get("Error") or {}).get("Message") or "")
    if code == "validationexception":
        if _TOO_LONG.search(message):
            return HistoryTooLong(
                "This conversation is too long for the language model; start a new conversation."
            )
        return BackendError(f"Bedrock refused the request (ValidationException): {message[:300]}")
    if code == "resourcenotfoundexception":
        return ConfigurationError(f"Bedrock has no such model (check TWIN_BEDROCK_MODEL_ID): {message[:300]}")
    if code in ("modelerrorexception", "modelstreamerrorexception"):
        return BackendError(f"the Bedrock model failed ({code}): {message[:300]}")
    return None


def _check_deadline(prompt: Prompt) -> None:
    if prompt.timeout is not None and prompt.timeout <= 0:
        raise BackendTimeout("no time is left before the language model's deadline")


def _prompt_cache(config: Mapping[str, Any], model_id: str) -> bool:
    raw = config.get("BEDROCK_PROMPT_CACHE", "auto")
    value = str(raw).strip().lower()
    if value in ("auto", ""):
        return supports_prompt_cache(model_id)
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ConfigurationError(f"TWIN_BEDROCK_PROMPT_CACHE must be auto, on or off, not {raw!r}")
