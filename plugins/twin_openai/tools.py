"""Tools in OpenAI's chat-completions shape: the offered ``tools``, the earlier rounds as messages, the calls.

A round goes back as the assistant message that asked (``tool_calls``) and
one ``tool`` message per result; a streamed reply's calls arrive in pieces
(``delta.tool_calls[i]``: the id and name first, the JSON arguments in
fragments) and are put together by index.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from twin_server import Tool, ToolCall, ToolRound

__all__ = ["StreamedCalls", "calls_of", "round_messages", "tool_specs"]


def tool_specs(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                               "parameters": dict(t.parameters)}} for t in tools]


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def round_messages(rounds: Iterable[ToolRound]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for done in rounds:
        calls = [{"id": c.id, "type": "function",
                  "function": {"name": c.name, "arguments": _arguments_text(c.arguments)}} for c in done.calls]
        messages.append({"role": "assistant", "content": done.text or None, "tool_calls": calls})
        messages += [{"role": "tool", "tool_call_id": r.call_id, "content": r.content} for r in done.results]
    return messages


def _parsed(text: Any) -> Any:
    """A call's arguments: the JSON object they hold, else what was sent (which the core refuses)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text


def calls_of(message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    """The function calls of a completion's message."""
    found = []
    for index, call in enumerate(message.get("tool_calls") or ()):
        if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
            continue
        function = call["function"]
        found.append(ToolCall(str(call.get("id") or f"call_{index}"), str(function.get("name") or ""),
                              _parsed(function.get("arguments"))))
    return tuple(found)


class StreamedCalls:
    """The tool calls of a stream, put together from its deltas."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, Any]] = {}

    def add(self, deltas: Any) -> None:
        for position, delta in enumerate(deltas if isinstance(deltas, list) else ()):
            if not isinstance(delta, Mapping):
                continue
            index = delta.get("index") if isinstance(delta.get("index"), int) else position
            part = self._parts.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if delta.get("id"):
                part["id"] = str(delta["id"])
            function = delta.get("function")
            if isinstance(function, Mapping):
                if function.get("name"):
                    part["name"] += str(function["name"])
                if isinstance(function.get("arguments"), str):
                    part["arguments"] += function["arguments"]

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(p["id"] or f"call_{i}", p["name"], _parsed(p["arguments"]))
                     for i, p in sorted(self._parts.items()))
