"""Value types shared by the core and every plugin."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from twin_server.replies import Tool, ToolRound

Role = Literal["user", "assistant"]
_DECODER = json.JSONDecoder()  # json.loads re-checks its arguments on every call; stores call this per line
ROLES: tuple[str, ...] = ("user", "assistant")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation. ``complete`` is False for a reply cut short."""

    role: Role
    content: str
    timestamp: datetime = dataclasses.field(default_factory=utcnow)
    complete: bool = True

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError("content must be a string")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by the API and by the storage backends."""
        data: dict[str, Any] = {
            "role": self.role,
            "content": self.content,
            "timestamp": self.timestamp.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        }
        if not self.complete:
            data["complete"] = False
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Message":
        """Inverse of ``to_dict``; raises ValueError/TypeError/KeyError on a bad record."""
        stamp = datetime.fromisoformat(data["timestamp"])  # 3.11+ reads the "Z" suffix itself
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        complete = data.get("complete", True)
        if not isinstance(complete, bool):
            raise TypeError("complete must be a boolean")
        return cls(role=data["role"], content=data["content"], timestamp=stamp, complete=complete)


    def to_json_line(self) -> bytes:
        """The compact UTF-8 JSON record (no newline) that stores keep, one per line.

        Raises ValidationError for content that is not valid Unicode (a lone
        surrogate from a ``"\\ud800"`` JSON escape), before anything is written.
        """
        text = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            from twin_server.errors import ValidationError

            raise ValidationError("message content is not valid Unicode") from None

    @classmethod
    def from_json_line(cls, line: bytes | str) -> "Message":
        """Inverse of ``to_json_line``; ValueError for any record that is not a message."""
        try:
            record = _DECODER.decode(line.decode("utf-8") if isinstance(line, bytes) else line)
            if not isinstance(record, dict):
                raise TypeError("record is not an object")
            return cls.from_dict(record)
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a stored message ({type(exc).__name__})") from exc


@dataclasses.dataclass(frozen=True)
class Persona:
    """Who the twin is: the person's facts and writing, as loaded by a persona source."""

    full_name: str
    facts: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    summary: str = ""
    style: str = ""
    linkedin: str = ""
    notes: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))
        object.__setattr__(self, "notes", MappingProxyType(dict(self.notes)))

    @property
    def name(self) -> str:
        return self.full_name

    @property
    def intro(self) -> str:
        """A one-line introduction for a page header."""
        for key in ("headline", "tagline", "current_role", "role"):
            value = self.facts.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        first = self.summary.strip().split("\n", 1)[0]
        return first.split(". ", 1)[0].rstrip(".") + "." if first else ""


@dataclasses.dataclass(frozen=True)
class Prompt:
    """What an LLM backend is asked to continue.

    ``messages`` is oldest first with the new user message last; ``timeout`` is
    the number of seconds left before the call's deadline when this attempt
    starts (None when there is no deadline). ``tools`` are offered only to a
    backend that declares ``supports_tools = True``; ``tool_rounds`` are the
    model's earlier calls in this turn and the core's results, after the last
    user message (see ``twin_server.replies``).
    """

    system: str
    messages: tuple[Message, ...]
    persona: Persona
    timeout: float | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tools: tuple["Tool", ...] = ()
    tool_rounds: tuple["ToolRound", ...] = ()

    def with_timeout(self, timeout: float | None) -> "Prompt":
        return dataclasses.replace(self, timeout=timeout)
