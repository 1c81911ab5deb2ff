"""What a language model may answer beside plain text: tool calls, a finish reason, "not covered".

An LLM backend's ``complete(prompt)`` returns a ``str``. It may return a
``Reply`` instead: a ``str`` subclass (so everything that treats a reply as
text keeps working) that also carries

* ``tool_calls``: the tools the model asks the core to run (only when the
  prompt offered ``tools``; see ``Prompt.tools`` and ``supports_tools``),
* ``finish_reason``: ``"stop"``, or ``"length"`` when the reply was cut at
  its token limit,
* ``covered``: False when the backend knows its answer is an honest "I don't
  know" (the offline model's "not covered" answer), so the core can record an
  unanswered question without knowing any backend.

A backend's ``stream(prompt)`` yields ``str`` pieces; a piece that is a
``Reply`` (usually empty, the last one) carries the same information for the
streamed reply. The core strips such pieces of their metadata before anyone
sees them.

The core runs the tool calls itself: a ``ToolRound`` is one call of the model
that asked for tools, with the results the core answered; the next call's
``Prompt.tool_rounds`` holds every round so far, after the last user message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FINISH_REASONS", "Reply", "Tool", "ToolCall", "ToolResult", "ToolRound", "as_reply"]

FINISH_REASONS = ("stop", "length")


@dataclasses.dataclass(frozen=True)
class Tool:
    """A tool the core offers the model: its name, what it is for, and a JSON Schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """The model asks for ``name`` with ``arguments`` (a dict when the model sent a JSON object;
    whatever else it sent otherwise, which the core refuses). ``id`` pairs the call with its result."""

    id: str
    name: str
    arguments: Any


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """The core's answer to one call: ``content`` is JSON text; ``ok`` is False when it was refused."""

    call_id: str
    content: str
    ok: bool = True


@dataclasses.dataclass(frozen=True)
class ToolRound:
    """One model call that asked for tools: the text it said too, its calls, and their results."""

    text: str
    calls: tuple[ToolCall, ...]
    results: tuple[ToolResult, ...]


class Reply(str):
    """A reply's text, with ``tool_calls``, ``finish_reason`` and ``covered`` (see the module docstring)."""

    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    covered: bool

    def __new__(
        cls, text: str = "", *, tool_calls: Iterable[ToolCall] = (), finish_reason: str = "stop", covered: bool = True
    ) -> "Reply":
        self = super().__new__(cls, text)
        self.tool_calls = tuple(tool_calls)
        self.finish_reason = finish_reason if finish_reason in FINISH_REASONS else "stop"
        self.covered = bool(covered)
        return self

    @property
    def text(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return (
            f"Reply({self.text!r}, tool_calls={self.tool_calls!r}, finish_reason={self.finish_reason!r}, "
            f"covered={self.covered!r})"
        )

    def __reduce__(self) -> Any:
        return (_rebuild, (self.text, self.tool_calls, self.finish_reason, self.covered))


def _rebuild(text: str, tool_calls: tuple[ToolCall, ...], finish_reason: str, covered: bool) -> Reply:
    return Reply(text, tool_calls=tool_calls, finish_reason=finish_reason, covered=covered)


def as_reply(value: object) -> Reply:
    """A backend's answer as a ``Reply``; TypeError for anything that is not text."""
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(value)
    raise TypeError(f"an LLM backend must return text, not {type(value).__name__}")
