"""The ``openai`` LLM backend: chat completions through the official SDK, one client per app.

The client is built once, in the factory, with ``max_retries=0`` (the core
retries, exactly once per attempt) and a default timeout of ``TWIN_LLM_TIMEOUT``;
each call is bounded by the time left before its deadline (``prompt.timeout``);
for a stream that bounds each wait for the next chunk.

CPU per call: the SDK's typed ``chat.completions.create`` runs every message
through its TypedDict transformer (~4 ms at 21 messages, ~17 ms at 101 here).
We send the same request through the SDK's documented low-level
``client.post("/chat/completions", body=..., cast_to=object)`` instead: the same
transport, headers, error classes and SSE decoding, with our plain dicts sent as
they are and the JSON handed back as a dict (``benchmarks/bench_openai.py``).
Three more cuts, each measured there: the body is encoded once by orjson
and handed over as ``content`` (the SDK's encoder, a stdlib subclass, took
~23 us for an 8 KB system prompt, orjson ~0.4 us); the URL is absolute, so it is parsed once, not merged with the base
URL; and the seven static ``X-Stainless-*`` headers that describe our platform
to the vendor are not sent (each header costs validation in httpx and h11 on
every call). The per-call ``x-stainless-retry-count`` and
``x-stainless-read-timeout`` stay. And the SDK's httpx client runs over our own
transport (``twin_openai.transport``), not httpcore + h11: ~0.63x the CPU per call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import openai
import orjson

from twin_openai.config import OpenAISettings
from twin_openai.errors import API_KEY_SECRET
from twin_openai.tools import StreamedCalls, calls_of, round_messages, tool_specs
from twin_openai.translate import ErrorTranslator
from twin_openai.transport import for_base_url
from twin_server import Prompt, Reply, report_usage
from twin_server.errors import BackendError, BackendTimeout

log = logging.getLogger("twin_openai")

COMPLETIONS_PATH = "/chat/completions"
#: Static headers describing the client's platform; not sent (see the module docstring).
PLATFORM_HEADERS = ("X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch",
                    "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Async")

#: prompt.options keys a caller may override per call, and the request field each sets.
OVERRIDES: dict[str, str] = {"temperature": "temperature", "max_tokens": "max_tokens"}


class OpenAIBackend:
    """``complete`` and ``stream`` over an OpenAI-compatible chat-completions API, with tools
    (``TWIN_OPENAI_TOOLS``, on by default: ``supports_tools``)."""

    #: The core may ask ``complete`` for a conversation's rolling summary.
    summarises = True

    def __init__(self, client: openai.OpenAI, settings: OpenAISettings, translate: ErrorTranslator) -> None:
        self.client = client
        self.settings = settings
        self.translate = translate
        base: dict[str, Any] = {"model": settings.model}
        if settings.temperature is not None:
            base["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            base["max_tokens"] = settings.max_tokens
        self._base_body = base
        self._stream_cls = openai.Stream[object]
        self._url = settings.base_url + COMPLETIONS_PATH
        self.supports_tools = settings.tools

    @classmethod
    def from_context(cls, context: Any) -> "OpenAIBackend":
        """The factory's work: settings, the API key from the secrets provider, one client."""
        settings = OpenAISettings.from_settings(context.settings)
        api_key = context.secret(API_KEY_SECRET)
        client = openai.OpenAI(
            api_key=api_key,
            base_url=settings.base_url,
            organization=settings.organization,
            project=settings.project,
            timeout=settings.timeout,
            max_retries=0,
            default_headers={name: openai.Omit() for name in PLATFORM_HEADERS},
            http_client=_http_client(settings.base_url) if settings.transport == "builtin" else None,
        )
        return cls(client, settings, ErrorTranslator(api_key, settings.base_url))

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    def complete(self, prompt: Prompt) -> Reply:
        body, options = self._request(prompt)
        content = _encode(body)
        try:
            data = self.client.post(self._url, content=content, cast_to=object, options=options)
        except openai.OpenAIError as exc:
            raise self.translate(exc) from exc
        except ValueError as exc:  # a 200 whose JSON does not parse
            raise self._not_a_completion() from exc
        _report(data)
        return self._reply(data)

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """Text deltas as the server sends them; the request is made at the first ``next()``."""
        body, options = self._request(prompt)
        body["stream"] = True
        content = _encode(body)
        try:
            chunks = self.client.post(
                self._url, content=content, cast_to=object, options=options,
                stream=True, stream_cls=self._stream_cls,
            )
            said_something, calls, finish = False, StreamedCalls(), None
            with chunks:
                for chunk in chunks:
                    _report(chunk)  # servers that count a stream send usage on its last chunk
                    delta, finish = _delta(chunk, finish)
                    text = delta.get("content")
                    if isinstance(text, str) and text:
                        said_something = True
                        yield text
                    if delta.get("tool_calls"):
                        calls.add(delta["tool_calls"])
        except openai.OpenAIError as exc:
            raise self.translate(exc) from exc
        except ValueError as exc:  # an event whose JSON does not parse
            raise self._not_a_completion() from exc
        found = calls.calls() if prompt.tools else ()
        if not said_something and not found:
            raise BackendError(f"{self.settings.base_url} streamed no text")
        if found or finish == "length":
            yield Reply("", tool_calls=found, finish_reason="length" if finish == "length" else "stop")

    def _request(self, prompt: Prompt) -> tuple[dict[str, Any], dict[str, Any]]:
        messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
        messages += [{"role": m.role, "content": m.content} for m in prompt.messages]
        messages += round_messages(prompt.tool_rounds)
        body = {**self._base_body, "messages": messages}
        if prompt.tools:
            body["tools"] = tool_specs(prompt.tools)
        if prompt.options:
            for option, field in OVERRIDES.items():
                value = prompt.options.get(option)
                if value is not None:
                    if option == "max_tokens" and self.settings.max_tokens is not None:
                        value = min(value, self.settings.max_tokens)  # the operator's cap is a ceiling
                    body[field] = value
        return body, {"timeout": self._timeout(prompt.timeout)}

    def _timeout(self, left: float | None) -> float:
        limit = self.settings.timeout
        if left is None:
            return limit
        if left <= 0:
            raise BackendTimeout("no time was left for the call to the language model")
        return min(left, limit)

    def _reply(self, data: Any) -> Reply:
        try:
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._not_a_completion() from None
        calls = calls_of(message)
        if (not isinstance(text, str) or not text) and not calls:
            raise BackendError(
                f"{self.settings.base_url} answered with no text (finish_reason={choice.get('finish_reason')!r})"
            )
        finish = "stop"
        if choice.get("finish_reason") == "length":
            log.warning("the reply of model %s was cut at its token limit", self.settings.model)
            finish = "length"
        return Reply(text if isinstance(text, str) else "", tool_calls=calls, finish_reason=finish)

    def _not_a_completion(self) -> BackendError:
        return BackendError(f"{self.settings.base_url} answered something that is not a chat completion")


def _http_client(base_url: str) -> openai.DefaultHttpxClient | None:
    """The SDK's httpx client over our transport; None (the SDK builds its own) when a proxy applies."""
    transport = for_base_url(base_url)
    return None if transport is None else openai.DefaultHttpxClient(transport=transport)


def _encode(body: dict[str, Any]) -> bytes:
    """The request as compact UTF-8 JSON, as the SDK would send it."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:  # text that is not valid Unicode, a number JSON cannot carry
        raise BackendError(f"the request to the language model cannot be encoded as JSON ({exc})") from None


def _report(data: Any) -> None:
    usage = data.get("usage") if isinstance(data, Mapping) else None
    if isinstance(usage, Mapping):
        tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        report_usage(
            input_tokens=tokens_in if isinstance(tokens_in, int) else None,
            output_tokens=tokens_out if isinstance(tokens_out, int) else None,
        )


def _delta(chunk: Any, finish: str | None) -> tuple[Mapping[str, Any], str | None]:
    """A chunk's delta (empty when it has none) and the stream's finish reason so far."""
    if not isinstance(chunk, Mapping):
        return {}, finish
    choices = chunk.get("choices")
    if not choices or not isinstance(choices[0], Mapping):
        return {}, finish
    delta = choices[0].get("delta")
    return (delta if isinstance(delta, Mapping) else {}), choices[0].get("finish_reason") or finish
