"""The tool loop of a turn: the core offers tools, runs the model's calls itself, and asks it again.

Only a backend that declares ``supports_tools = True`` is offered tools
(``Prompt.tools``); any other backend's reply is used as it comes. When a
reply asks for tools, the core runs each call through the turn's ``ToolBox``
(which validates the arguments and refuses what breaks a rule, back to the
model, never storing it), then calls the model again with every round so far
in ``Prompt.tool_rounds``: at most ``MAX_TOOL_ROUNDS`` rounds per turn, each a
call through the core's retry like any other. Calls the model asks for after
the last round are not run. Text the model says in several rounds is joined,
whole (``complete``) or as it streams (``ToolStream``): what the visitor saw
is what is stored.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from twin_server.errors import BackendError
from twin_server.replies import Reply, Tool, ToolCall, ToolResult, ToolRound, as_reply
from twin_server.types import Prompt

if TYPE_CHECKING:
    from twin_server.turn.turn import Turn

__all__ = ["MAX_TOOL_ROUNDS", "ToolBox", "ToolStream", "complete"]

log = logging.getLogger("twin_server.turn")

MAX_TOOL_ROUNDS = 3
SEPARATOR = "\n\n"


class ToolBox(Protocol):
    """The tools a turn offers, and how the core runs them."""

    tools: tuple[Tool, ...]

    def run(self, turn: "Turn", call: ToolCall) -> ToolResult:
        """Run one call (or refuse it, with ``ok=False`` and the reason as the result)."""

    def abandoned(self, turn: "Turn") -> None:
        """The turn failed after some calls ran: whatever they recorded must not wait for its end."""


def complete(turn: "Turn") -> Reply:
    """The whole reply of ``turn``, tool rounds included."""
    llm, toolbox, prompt = turn.turns.backends.llm, turn.turns.toolbox, turn.prompt
    rounds: list[ToolRound] = []
    text = ""
    try:
        while True:
            reply = _reply(llm.complete(_with_rounds(prompt, rounds)))
            text = _join(text, reply.text)
            if not _runs_tools(reply, prompt, toolbox, rounds):
                break
            rounds.append(_run_round(turn, toolbox, reply.text, reply.tool_calls))
    except Exception:
        if rounds and toolbox is not None:
            toolbox.abandoned(turn)
        raise
    if rounds and not text:
        raise BackendError("the language model answered its tool results with no text")
    return Reply(text, finish_reason=reply.finish_reason, covered=reply.covered)


class ToolStream:
    """The text pieces of a streamed reply, across tool rounds; then its ``finish_reason`` and ``covered``.

    Built with the first piece of text in hand (every tool round before it
    run), so anything failing up to then fails here, before any byte of a
    response is sent. ``close()`` stops the model's stream.
    """

    def __init__(self, turn: "Turn") -> None:
        self.turn = turn
        self.finish_reason = "stop"
        self.covered = True
        self._pieces = self._generate()
        self._head = list(itertools.islice(self._pieces, 1))

    def __iter__(self) -> Iterator[str]:
        head, self._head = self._head, []
        yield from head
        yield from self._pieces

    def close(self) -> None:
        self._pieces.close()

    def _generate(self) -> Iterator[str]:
        llm, toolbox, prompt = self.turn.turns.backends.llm, self.turn.turns.toolbox, self.turn.prompt
        rounds: list[ToolRound] = []
        said = ""  # the last piece of text sent, for the separator between rounds
        try:
            while True:
                calls: list[ToolCall] = []
                texts: list[str] = []
                self.finish_reason, self.covered = "stop", True  # what the last round says is what counts
                source = llm.stream(_with_rounds(prompt, rounds))
                try:
                    for piece in source:
                        if isinstance(piece, Reply):
                            calls.extend(piece.tool_calls)
                            self.finish_reason, self.covered = piece.finish_reason, piece.covered
                        elif not isinstance(piece, str):
                            raise BackendError(f"the language model streamed a {type(piece).__name__}, not text")
                        text = str(piece)
                        if not text:
                            continue
                        if not texts and rounds and _needs_separator(said, text):
                            yield SEPARATOR
                        texts.append(text)
                        said = text
                        yield text
                finally:
                    close = getattr(source, "close", None)
                    if close is not None:
                        close()
                reply = Reply("".join(texts), tool_calls=calls)
                if not _runs_tools(reply, prompt, toolbox, rounds):
                    return
                rounds.append(_run_round(self.turn, toolbox, reply.text, reply.tool_calls))
        except Exception:
            if rounds and toolbox is not None:
                toolbox.abandoned(self.turn)
            raise


def _reply(value: object) -> Reply:
    try:
        return as_reply(value)
    except TypeError as exc:
        raise BackendError(str(exc)) from None


def _with_rounds(prompt: Prompt, rounds: list[ToolRound]) -> Prompt:
    return dataclasses.replace(prompt, tool_rounds=tuple(rounds)) if rounds else prompt


def _runs_tools(reply: Reply, prompt: Prompt, toolbox: Any, rounds: list[ToolRound]) -> bool:
    if not reply.tool_calls or not prompt.tools or toolbox is None:
        return False
    if len(rounds) >= MAX_TOOL_ROUNDS:
        log.warning("the language model still asked for %d tool calls after %d rounds; they were not run",
                    len(reply.tool_calls), len(rounds))
        return False
    return True


def _run_round(turn: "Turn", toolbox: ToolBox, text: str, calls: tuple[ToolCall, ...]) -> ToolRound:
    return ToolRound(text, calls, tuple(toolbox.run(turn, call) for call in calls))


def _needs_separator(before: str, after: str) -> bool:
    return bool(before) and not before[-1].isspace() and not after[0].isspace()


def _join(before: str, after: str) -> str:
    if not before or not after:
        return before or after
    return before + (SEPARATOR if _needs_separator(before, after) else "") + after
