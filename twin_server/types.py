"""Value types shared by the core and every plugin."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import orjson

if TYPE_CHECKING:
    from twin_server.replies import Tool, ToolRound

Role = Literal["user", "assistant"]
#: Line breaks to str.splitlines() that JSON leaves raw: escaped, so one record stays one line to every reader.
LINE_BREAK_ESCAPES = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
#: The same in UTF-8 (each sequence only ever encodes its own character), for a record orjson wrote.
_LINE_BREAKS_UTF8 = tuple((chr(code).encode(), escaped.encode()) for code, escaped in LINE_BREAK_ESCAPES.items())
ROLES: tuple[str, ...] = ("user", "assistant")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """A persona passage a reply is based on: its stable ``id`` and a ``title`` a person can read."""

    id: str
    title: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title}

    @classmethod
    def from_dicts(cls, items: Any) -> tuple["Source", ...]:
        """The well-formed ``{"id", "title"}`` entries of a stored list (others are skipped)."""
        if not isinstance(items, list):
            return ()
        return tuple(
            cls(item["id"], item["title"])
            for item in items
            if isinstance(item, Mapping) and isinstance(item.get("id"), str) and isinstance(item.get("title"), str)
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation. ``complete`` is False for a reply cut short; ``sources`` are
    the persona passages a reply was based on (empty for a visitor's message)."""

    role: Role
    content: str
    timestamp: datetime = dataclasses.field(default_factory=utcnow)
    complete: bool = True
    sources: tuple[Source, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError("content must be a string")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by the API and by the storage backends."""
        return self._record(self.timestamp.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"))

    def _record(self, timestamp: str | datetime) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content, "timestamp": timestamp}
        if not self.complete:
            data["complete"] = False
        if self.sources:
            data["sources"] = [source.to_dict() for source in self.sources]
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
        sources = Source.from_dicts(data["sources"]) if "sources" in data else ()
        return cls(role=data["role"], content=data["content"], timestamp=stamp, complete=complete, sources=sources)


    def to_json_line(self) -> bytes:
        """The compact UTF-8 JSON record (no newline) that stores keep, one per line.

        Raises ValidationError for content that is not valid Unicode (a lone
        surrogate from a ``"\\ud800"`` JSON escape), before anything is written.
        """
        stamp = self.timestamp.astimezone(timezone.utc)
        try:
            # orjson writes a datetime in UTC as to_dict's isoformat() with "Z" reads, without making that str
            # first; a datetime subclass it does not write at all, so that one goes the way of to_dict.
            line = (orjson.dumps(self._record(stamp), option=orjson.OPT_UTC_Z) if type(stamp) is datetime
                    else orjson.dumps(self.to_dict()))
        except orjson.JSONEncodeError:  # the only str it refuses is one with a surrogate
            from twin_server.errors import ValidationError

            raise ValidationError("message content is not valid Unicode") from None
        if line.isascii():
            return line
        for raw, escaped in _LINE_BREAKS_UTF8:
            line = line.replace(raw, escaped)
        return line

    @classmethod
    def from_json_line(cls, line: bytes | str) -> "Message":
        """Inverse of ``to_json_line``; ValueError for any record that is not a message."""
        try:
            record = orjson.loads(line)
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
    #: The passages in this prompt that bear on the new message, best first: the reply's sources
    #: unless the backend narrows them with ``cite``.
    sources: tuple[Source, ...] = ()
    #: Set by the turn; ``cite`` reports to it.
    on_cite: Callable[[tuple[str, ...]], None] | None = dataclasses.field(default=None, repr=False, compare=False)
    tools: tuple["Tool", ...] = ()
    tool_rounds: tuple["ToolRound", ...] = ()

    def with_timeout(self, timeout: float | None) -> "Prompt":
        """This prompt with ``timeout`` set (every LLM attempt makes one: a copy of the fields, as
        ``dataclasses.replace`` would give, without its per-call field walk and ``__init__``)."""
        copied = object.__new__(type(self))
        fields = copied.__dict__
        fields.update(self.__dict__)
        fields["timeout"] = timeout
        return copied

    def cite(self, ids: Iterable[str]) -> None:
        """The backend says which persona passages (by id) its reply is based on; ``[]`` for none.

        The last call of a turn wins; ids the persona does not have (or holds private) are ignored.
        A backend that never calls it gets ``sources``. The offline model cites what it said; a
        tool-calling backend can offer the model a ``cite(ids)`` tool that ends up here.
        """
        if self.on_cite is not None:
            self.on_cite(tuple(str(i) for i in ids))


@dataclasses.dataclass(frozen=True)
class Summary:
    """The rolling summary of a session's earlier messages, kept by the store beside the session.

    ``through`` is the timestamp of the newest message it covers and ``messages`` how many
    messages it covers in all.
    """

    text: str
    through: datetime
    messages: int = 0
    updated: datetime = dataclasses.field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        def stamp(moment: datetime) -> str:
            return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")

        return {"text": self.text, "through": stamp(self.through), "messages": self.messages,
                "updated": stamp(self.updated)}

    def to_json(self) -> bytes:
        record = self.to_dict()
        try:
            # Byte for byte what the standard library writes (tests/core/test_json_lines.py), in a third of the time.
            return orjson.dumps(record) if type(self.messages) is int and isinstance(self.text, str) else _json(record)
        except orjson.JSONEncodeError:  # a lone surrogate, an int past 64 bits: the standard library's own outcome
            return _json(record)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Summary":
        """Inverse of ``to_dict``; ValueError for anything that is not a summary."""
        try:
            if not isinstance(data, Mapping) or not isinstance(data["text"], str):
                raise TypeError("not a summary")
            stamps = [datetime.fromisoformat(data[key]) for key in ("through", "updated")]
            stamps = [s if s.tzinfo else s.replace(tzinfo=timezone.utc) for s in stamps]
            count = data.get("messages", 0)
            if type(count) is not int or count < 0:
                raise TypeError("messages must be a whole number")
        except (TypeError, KeyError) as exc:
            raise ValueError(f"not a stored summary ({type(exc).__name__})") from exc
        return cls(data["text"], stamps[0], count, stamps[1])

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Summary":
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("not a stored summary (not JSON)") from exc
        return cls.from_dict(data)


def _json(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
