"""What a twin tells its owner: leads and unanswered questions, as values every event store keeps.

A ``Lead`` is a visitor's way back: a validated email address, optionally a
name and a note of what they want, stored once per session and address (its
id is derived from both, so a store dedups by refusing an id it has). A
``Question`` is a question the persona does not cover, one entry per
normalised wording (its id is derived from that), counting how often each
session asked it. Both carry ``delivery``: notifier name → ``"pending"``,
``"delivered"`` or ``"failed"``.

Every text field has a length limit (``EMAIL_MAX``, ``NAME_MAX``,
``NOTES_MAX``, ``QUESTION_MAX``); ``Lead.create`` and ``Question.create``
refuse what breaks a rule with a ``ValueError`` that says which, and are the
only way the core makes events.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from twin_server.errors import ValidationError
from twin_server.sessions import is_session_id

__all__ = [
    "DELIVERY_STATES", "EMAIL_MAX", "NAME_MAX", "NOTES_MAX", "QUESTION_MAX", "SESSIONS_PER_QUESTION",
    "Lead", "Question", "SessionActivity", "describe", "find_emails", "normalise_question", "valid_email",
]

EMAIL_MAX = 254  # RFC 5321's path limit
NAME_MAX = 100
NOTES_MAX = 1000
QUESTION_MAX = 500
#: Sessions a question remembers by id; older ones are folded into an anonymous count.
SESSIONS_PER_QUESTION = 1000
DELIVERY_STATES = ("pending", "delivered", "failed")

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
_EMAIL = re.compile(f"{_LOCAL}@{_DOMAIN}")
_EMAIL_IN_TEXT = re.compile(rf"(?<![\w.@+-])({_LOCAL}@{_DOMAIN})(?![\w@-]|\.[A-Za-z0-9])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_LINE_BREAK = re.compile(r"[\r\n\t]")


def valid_email(value: object) -> bool:
    if not isinstance(value, str) or len(value) > EMAIL_MAX or not _EMAIL.fullmatch(value):
        return False
    return len(value.split("@", 1)[0]) <= 64


def find_emails(text: str) -> list[str]:
    """The valid email addresses written in ``text``, in order, each once (compared case-insensitively)."""
    found: list[str] = []
    for match in _EMAIL_IN_TEXT.finditer(text):
        address = match.group(1)
        if valid_email(address) and address.lower() not in (a.lower() for a in found):
            found.append(address)
    return found


def normalise_question(text: str) -> str:
    """The wording two askings of one question share: case, spacing and end punctuation ignored."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" ?!.,;:¿¡\"'")


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _text(value: Any, field: str, limit: int, *, required: bool = False, lines: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    value = value.strip()
    if required and not value:
        raise ValueError(f"{field} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{field} must be at most {limit} characters")
    if _CONTROL.search(value) or (not lines and _LINE_BREAK.search(value)):
        raise ValueError(f"{field} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field} must be valid Unicode text") from None
    return value


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=10).hexdigest()


def _delivery(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v in DELIVERY_STATES}


@dataclasses.dataclass(frozen=True)
class Lead:
    """A visitor's contact details. ``id`` is ``<session_id>.<digest of the address>``."""

    id: str
    session_id: str
    email: str
    name: str
    notes: str
    created_at: datetime
    delivery: Mapping[str, str] = dataclasses.field(default_factory=dict)

    kind = "lead"

    @classmethod
    def create(cls, session_id: str, email: Any, name: Any = "", notes: Any = "", *,
               at: datetime, delivery: Mapping[str, str] | None = None) -> "Lead":
        """A new lead; ValueError naming the field that breaks a rule."""
        email = _text(email, "email", EMAIL_MAX, required=True)
        if not valid_email(email):
            raise ValueError("email is not a valid email address")
        name = _text(name, "name", NAME_MAX)
        notes = _text(notes, "notes", NOTES_MAX, lines=True)
        return cls(cls.id_for(session_id, email), session_id, email, name, notes, at, dict(delivery or {}))

    @staticmethod
    def id_for(session_id: str, email: str) -> str:
        return f"{session_id}.{_digest(email.lower())}"

    def with_delivery(self, states: Mapping[str, str]) -> "Lead":
        """This event with what notifiers did with it (notifier → ``delivered`` | ``failed``)."""
        return dataclasses.replace(self, delivery={**self.delivery, **_delivery(states)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "session_id": self.session_id, "email": self.email, "name": self.name,
            "notes": self.notes, "created_at": _stamp(self.created_at), "delivery": dict(self.delivery),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Lead":
        return cls(
            id=str(data["id"]), session_id=str(data["session_id"]), email=str(data["email"]),
            name=str(data.get("name") or ""), notes=str(data.get("notes") or ""),
            created_at=_moment(data["created_at"]), delivery=_delivery(data.get("delivery")),
        )

    @property
    def when(self) -> datetime:
        return self.created_at


@dataclasses.dataclass(frozen=True)
class Question:
    """An unanswered question: its first wording, and how often each session asked it.

    ``asks`` maps session id → times asked (the session that asked last, last); ``others``
    counts asks of sessions no longer remembered by id (beyond
    ``SESSIONS_PER_QUESTION``). ``id`` is a digest of the normalised wording.
    """

    id: str
    question: str
    first_asked: datetime
    last_asked: datetime
    asks: Mapping[str, int]
    others: int = 0
    delivery: Mapping[str, str] = dataclasses.field(default_factory=dict)

    kind = "unanswered"

    @classmethod
    def create(cls, session_id: str, question: Any, *, at: datetime,
               delivery: Mapping[str, str] | None = None) -> "Question":
        """A question asked once, by ``session_id``; ValueError when it breaks a rule."""
        text = _text(question, "question", QUESTION_MAX, required=True, lines=True)
        key = normalise_question(text)
        if not key:
            raise ValueError("question must hold some words")
        return cls(_digest(key), text, at, at, {session_id: 1}, 0, dict(delivery or {}))

    @property
    def count(self) -> int:
        return sum(self.asks.values()) + self.others

    @property
    def session_ids(self) -> tuple[str, ...]:
        return tuple(self.asks)

    @property
    def session_id(self) -> str:
        """The session that asked first (of those still remembered)."""
        return next(iter(self.asks), "")

    @property
    def when(self) -> datetime:
        return self.last_asked

    def merged(self, other: "Question") -> "Question":
        """This entry after ``other`` (the same question, asked again) was recorded."""
        asks = dict(self.asks)
        for session_id, times in other.asks.items():
            asks[session_id] = asks.pop(session_id, 0) + times
        others = self.others + other.others
        while len(asks) > SESSIONS_PER_QUESTION:
            oldest = next(iter(asks))
            others += asks.pop(oldest)
        return dataclasses.replace(
            self, asks=asks, others=others, first_asked=min(self.first_asked, other.first_asked),
            last_asked=max(self.last_asked, other.last_asked),
        )

    def without_session(self, session_id: str) -> "Question | None":
        """This entry with ``session_id``'s asks taken out; None when nothing is left."""
        if session_id not in self.asks:
            return self
        asks = {k: v for k, v in self.asks.items() if k != session_id}
        if not asks and not self.others:
            return None
        return dataclasses.replace(self, asks=asks)

    def with_delivery(self, states: Mapping[str, str]) -> "Question":
        """This event with what notifiers did with it (notifier → ``delivered`` | ``failed``)."""
        return dataclasses.replace(self, delivery={**self.delivery, **_delivery(states)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "question": self.question, "count": self.count, "session_ids": list(self.session_ids),
            "first_asked": _stamp(self.first_asked), "last_asked": _stamp(self.last_asked),
            "asks": dict(self.asks), "others": self.others, "delivery": dict(self.delivery),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Question":
        asks = data.get("asks")
        if not isinstance(asks, Mapping):
            asks = {}
        return cls(
            id=str(data["id"]), question=str(data["question"]), first_asked=_moment(data["first_asked"]),
            last_asked=_moment(data["last_asked"]), asks={str(k): int(v) for k, v in asks.items()},
            others=int(data.get("others") or 0), delivery=_delivery(data.get("delivery")),
        )


@dataclasses.dataclass(frozen=True)
class SessionActivity:
    """A stored conversation in a listing: its id and when it was last written."""

    session_id: str
    last_activity: datetime


def listing_cursor(stamp: int, session_id: str) -> str:
    """The opaque ``cursor`` of a conversation listing, after the entry (``stamp``, ``session_id``)."""
    return base64.urlsafe_b64encode(f"{stamp}:{session_id}".encode()).decode().rstrip("=")


def read_listing_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of ``listing_cursor``; a 400 (``ValidationError``) for one this server did not give."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        stamp, _, session_id = text.partition(":")
        if not stamp.isdigit() or not is_session_id(session_id):
            raise ValueError(text)
        return int(stamp), session_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor is not one this server gave") from None


def describe(event: "Lead | Question") -> dict[str, Any]:
    """What a notifier sends: ``event`` (``lead`` | ``unanswered``), the public fields, and a one-line ``text``."""
    if isinstance(event, Lead):
        who = f"{event.name} <{event.email}>" if event.name else event.email
        text = f"New lead from your twin: {who}" + (f" — {_one_line(event.notes)}" if event.notes else "")
        fields = {k: v for k, v in event.to_dict().items() if k != "delivery"}
        return {"event": "lead", **fields, "text": text}
    asked = f" (asked {event.count} times)" if event.count > 1 else ""
    text = f"Your twin could not answer: {_one_line(event.question)}{asked}"
    fields = {k: v for k, v in event.to_dict().items() if k not in ("delivery", "asks", "others")}
    return {"event": "unanswered", **fields, "text": text}


def _one_line(text: str, limit: int = 300) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
