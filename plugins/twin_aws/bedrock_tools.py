"""Tools in Bedrock Converse's shape: ``toolConfig``, ``toolUse`` / ``toolResult`` blocks, streamed tool use.

A round goes back as the assistant message that asked (its text, then one
``toolUse`` block per call) and a user message of ``toolResult`` blocks. In
ConverseStream a tool use starts with ``contentBlockStart.start.toolUse``
(id and name) and its JSON input comes in ``contentBlockDelta.delta.toolUse.input``
fragments, put together by block index.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from twin_server import Tool, ToolCall, ToolRound

__all__ = ["StreamedUses", "calls_of", "round_messages", "tool_config"]


def tool_config(tools: Sequence[Tool]) -> dict[str, Any]:
    return {"tools": [{"toolSpec": {"name": t.name, "description": t.description,
                                    "inputSchema": {"json": dict(t.parameters)}}} for t in tools]}


def round_messages(rounds: Iterable[ToolRound]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for done in rounds:
        content: list[dict[str, Any]] = [{"text": done.text}] if done.text.strip() else []
        content += [{"toolUse": {"toolUseId": c.id, "name": c.name,
                                 "input": c.arguments if isinstance(c.arguments, dict) else {}}} for c in done.calls]
        messages.append({"role": "assistant", "content": content})
        messages.append({"role": "user", "content": [
            {"toolResult": {"toolUseId": r.call_id, "content": [{"text": r.content}]}} for r in done.results
        ]})
    return messages


def calls_of(blocks: Iterable[Any]) -> tuple[ToolCall, ...]:
    found = []
    for block in blocks:
        use = block.get("toolUse") if isinstance(block, Mapping) else None
        if isinstance(use, Mapping):
            found.append(ToolCall(str(use.get("toolUseId") or ""), str(use.get("name") or ""), use.get("input")))
    return tuple(found)


class StreamedUses:
    """The tool uses of a ConverseStream, put together from its events."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def add(self, event: Mapping[str, Any]) -> None:
        start = event.get("contentBlockStart")
        if isinstance(start, Mapping):
            use = (start.get("start") or {}).get("toolUse")
            if isinstance(use, Mapping):
                self._parts[int(start.get("contentBlockIndex") or 0)] = {
                    "id": str(use.get("toolUseId") or ""), "name": str(use.get("name") or ""), "input": ""}
        delta = event.get("contentBlockDelta")
        if isinstance(delta, Mapping):
            use = (delta.get("delta") or {}).get("toolUse")
            part = self._parts.get(int(delta.get("contentBlockIndex") or 0))
            if isinstance(use, Mapping) and part is not None and isinstance(use.get("input"), str):
                part["input"] += use["input"]

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(p["id"], p["name"], _parsed(p["input"])) for _, p in sorted(self._parts.items()))


def _parsed(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text
