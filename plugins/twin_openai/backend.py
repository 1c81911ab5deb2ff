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
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import openai

from twin_openai.config import OpenAISettings
from twin_openai.errors import API_KEY_SECRET
from twin_openai.translate import ErrorTranslator
from twin_server import Prompt, report_usage
from twin_server.errors import BackendError, BackendTimeout

log = logging.getLogger("twin_openai")

COMPLETIONS_PATH = "/chat/completions"
#: prompt.options keys a caller may override per call, and the request field each sets.
OVERRIDES: dict[str, str] = {"temperature": "temperature", "max_tokens": "max_tokens"}


class OpenAIBackend:
    """``complete`` and ``stream`` over an OpenAI-compatible chat-completions API."""

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
        )
        return cls(client, settings, ErrorTranslator(api_key, settings.base_url))

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    def complete(self, prompt: Prompt) -> str:
        body, options = self._request(prompt)
        try:
            data = self.client.post(COMPLETIONS_PATH, body=body, cast_to=object, options=options)
        except openai.OpenAIError as exc:
            raise self.translate(exc) from exc
        except ValueError as exc:  # a 200 whose JSON does not parse
            raise self._not_a_completion() from exc
        _report(data)
        return self._reply_text(data)

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """Text deltas as the server sends them; the request is made at the first ``next()``."""
        body, options = self._request(prompt)
        body["stream"] = True
        try:
            chunks = self.client.post(
                COMPLETIONS_PATH, body=body, cast_to=object, options=options,
                stream=True, stream_cls=self._stream_cls,
            )
            said_something = False
            with chunks:
                for chunk in chunks:
                    _report(chunk)  # servers that count a stream send usage on its last chunk
                    text = _delta_text(chunk)
                    if text:
                        said_something = True
                        yield text
        except openai.OpenAIError as exc:
            raise self.translate(exc) from exc
        except ValueError as exc:  # an event whose JSON does not parse
            raise self._not_a_completion() from exc
        if not said_something:
            raise BackendError(f"{self.settings.base_url} streamed no text")

    def _request(self, prompt: Prompt) -> tuple[dict[str, Any], dict[str, Any]]:
        messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
        messages += [{"role": m.role, "content": m.content} for m in prompt.messages]
        body = {**self._base_body, "messages": messages}
        if prompt.options:
            for option, field in OVERRIDES.items():
                value = prompt.options.get(option)
                if value is not None:
                    body[field] = value
        return body, {"timeout": self._timeout(prompt.timeout)}

    def _timeout(self, left: float | None) -> float:
        limit = self.settings.timeout
        if left is None:
            return limit
        if left <= 0:
            raise BackendTimeout("no time was left for the call to the language model")
        return min(left, limit)

    def _reply_text(self, data: Any) -> str:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._not_a_completion() from None
        if not isinstance(text, str) or not text:
            raise BackendError(
                f"{self.settings.base_url} answered with no text (finish_reason={choice.get('finish_reason')!r})"
            )
        if choice.get("finish_reason") == "length":
            log.warning("the reply of model %s was cut at its token limit", self.settings.model)
        return text

    def _not_a_completion(self) -> BackendError:
        return BackendError(f"{self.settings.base_url} answered something that is not a chat completion")


def _report(data: Any) -> None:
    usage = data.get("usage") if isinstance(data, Mapping) else None
    if isinstance(usage, Mapping):
        tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        report_usage(
            input_tokens=tokens_in if isinstance(tokens_in, int) else None,
            output_tokens=tokens_out if isinstance(tokens_out, int) else None,
        )


def _delta_text(chunk: Any) -> str | None:
    if not isinstance(chunk, Mapping):
        return None
    choices = chunk.get("choices")
    if not choices or not isinstance(choices[0], Mapping):
        return None
    delta = choices[0].get("delta")
    text = delta.get("content") if isinstance(delta, Mapping) else None
    return text if isinstance(text, str) else None
