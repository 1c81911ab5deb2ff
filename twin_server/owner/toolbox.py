"""The two tools the core offers a model: ``record_contact`` and ``record_unanswered_question``.

Arguments are checked before anything is stored, and a call that breaks a
rule is refused back to the model (``ok=False``, the reason as JSON), never
stored: arguments that are not a JSON object, unknown or missing arguments, a
field that is not a string, longer than its limit or with control
characters, an address that is not a valid email address, or one the
visitor never wrote in this conversation (a model must not invent a lead).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from twin_server.errors import TwinError
from twin_server.events import EMAIL_MAX, NAME_MAX, NOTES_MAX, QUESTION_MAX, find_emails
from twin_server.replies import Tool, ToolCall, ToolResult

if TYPE_CHECKING:
    from twin_server.owner.recorder import OwnerEvents
    from twin_server.turn.turn import Turn

__all__ = ["OwnerTools", "RECORD_CONTACT", "RECORD_UNANSWERED", "TOOLS"]

log = logging.getLogger("twin_server.owner")


def _string(limit: int, description: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": limit, "description": description}


RECORD_CONTACT = Tool(
    "record_contact",
    "Record a visitor's contact details so that the person you represent can get back to them. Use it when the "
    "visitor gives an email address and wants to be contacted; pass the address exactly as the visitor wrote it, "
    "with their name and what they want when they said so.",
    {
        "type": "object",
        "properties": {
            "email": _string(EMAIL_MAX, "The visitor's email address, as they wrote it."),
            "name": _string(NAME_MAX, "The visitor's name, if they gave it."),
            "notes": _string(NOTES_MAX, "What the visitor wants, in a sentence or two."),
        },
        "required": ["email"],
        "additionalProperties": False,
    },
)
RECORD_UNANSWERED = Tool(
    "record_unanswered_question",
    "Record a question you could not answer from what you know about the person you represent, so that they can "
    "add the answer. Use it every time you cannot answer a question.",
    {
        "type": "object",
        "properties": {"question": _string(QUESTION_MAX, "The visitor's question.")},
        "required": ["question"],
        "additionalProperties": False,
    },
)
TOOLS = (RECORD_CONTACT, RECORD_UNANSWERED)
_ARGUMENTS = {RECORD_CONTACT.name: ({"email"}, {"email", "name", "notes"}),
              RECORD_UNANSWERED.name: ({"question"}, {"question"})}


class Refused(Exception):
    """A call that breaks a rule; its message (never an argument's value) goes back to the model."""


def _result(call: ToolCall, ok: bool, **fields: Any) -> ToolResult:
    return ToolResult(call.id, json.dumps(fields, ensure_ascii=False), ok)


class OwnerTools:
    """The ``ToolBox`` of a turn: runs the owner's tools, recording through ``OwnerEvents``."""

    tools = TOOLS

    def __init__(self, events: "OwnerEvents") -> None:
        self.events = events

    def run(self, turn: "Turn", call: ToolCall) -> ToolResult:
        try:
            arguments = self._arguments(call)
            if call.name == RECORD_CONTACT.name:
                email = arguments["email"].strip() if isinstance(arguments["email"], str) else arguments["email"]
                if isinstance(email, str) and email.lower() not in _visitor_emails(turn):
                    raise Refused("this address does not appear in the visitor's messages; record only an address "
                                  "the visitor wrote")
                new = self.events.record_lead(turn, turn.session_id, email, arguments.get("name"),
                                              arguments.get("notes"))
            else:
                new = self.events.record_question(turn, turn.session_id, arguments["question"])
        except (Refused, ValueError) as exc:
            log.warning("refused a %s call of the language model: %s", _name(call), exc)
            return _result(call, False, error=f"refused: {exc}")
        except TwinError as exc:
            log.error("could not record a %s call (%s); told the model", call.name, type(exc).__name__)
            return _result(call, False, error="it could not be recorded right now")
        return _result(call, True, recorded=True, **({} if new else {"already_recorded": True}))

    def abandoned(self, turn: "Turn") -> None:
        self.events.flush(turn)

    @staticmethod
    def _arguments(call: ToolCall) -> dict[str, Any]:
        if call.name not in _ARGUMENTS:
            raise Refused("there is no such tool")
        arguments = call.arguments
        if not isinstance(arguments, dict):
            raise Refused("the arguments must be a JSON object")
        required, allowed = _ARGUMENTS[call.name]
        unknown = sorted(set(arguments) - allowed)
        if unknown:
            raise Refused(f"unknown arguments: {', '.join(_quoted(u) for u in unknown[:5])}")
        missing = sorted(required - set(arguments))
        if missing:
            raise Refused(f"missing arguments: {', '.join(missing)}")
        return arguments


def _visitor_emails(turn: "Turn") -> set[str]:
    return {email.lower() for m in turn.prompt.messages if m.role == "user" for email in find_emails(m.content)}


def _name(call: ToolCall) -> str:
    return call.name if call.name in _ARGUMENTS else "tool"


def _quoted(name: Any) -> str:
    text = str(name)
    return repr(text[:40])
