"""The owner's events of one app: recorded in the turn, stored first, notified after the turn.

``OwnerEvents`` is what the rest of the core talks to: the tools and the
deterministic detection record through it (``record_lead``,
``record_question``), the turn's after-turn callback hands what a turn
recorded to the notifiers (``after_turn``), the owner's endpoints and
``twin-server inbox`` read and delete through it, and deleting a
conversation erases its events (``forget_session``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from twin_server.errors import TwinError, ValidationError
from twin_server.events import Lead, Question, SessionActivity
from twin_server.owner import detection
from twin_server.owner.delivery import REDELIVER_AFTER, Delivery
from twin_server.types import utcnow

if TYPE_CHECKING:
    from twin_server.turn.turn import Turn, TurnResult

__all__ = ["OwnerEvents"]

log = logging.getLogger("twin_server.owner")


class OwnerEvents:
    def __init__(self, store: Any, delivery: Delivery, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.store, self.delivery, self.clock = store, delivery, clock
        self._lock = threading.Lock()

    # -- recording ---------------------------------------------------------------

    def _pending(self) -> dict[str, str]:
        return {name: "pending" for name in self.delivery.names}

    def record_lead(self, turn: "Turn | None", session_id: str, email: Any, name: Any = "", notes: Any = "") -> bool:
        """Store a lead (ValueError when a field breaks a rule); True when new, and then notified after the turn."""
        lead = Lead.create(session_id, email, name, notes, at=self.clock(), delivery=self._pending())
        new = self.store.record_lead(lead)
        if new:
            self._recorded(turn, lead)
        return new

    def record_question(self, turn: "Turn | None", session_id: str, question: Any) -> bool:
        """Store an unanswered question, or count it again; True when new (and then notified)."""
        entry = Question.create(session_id, question, at=self.clock(), delivery=self._pending())
        new = self.store.record_question(entry)
        if new:
            self._recorded(turn, entry)
        return new

    def _recorded(self, turn: "Turn | None", event: Any) -> None:
        with self._lock:
            if turn is not None and turn.events is not None:
                turn.events.append(event)  # notified when the turn ends
                return
        self.delivery.put(event)

    def flush(self, turn: "Turn") -> None:
        """Hand what ``turn`` recorded to the notifiers; later records of the turn go at once."""
        with self._lock:
            events, turn.events = turn.events or [], None
        for event in events:
            self.delivery.put(event)

    def after_turn(self, turn: "Turn", result: "TurnResult") -> None:
        """The turn's after-turn callback: detection when no tools were offered, then the notifications."""
        try:
            if not result.prompt.tools:
                self._detect(turn, result)
        finally:
            self.flush(turn)

    def _detect(self, turn: "Turn", result: "TurnResult") -> None:
        """Detected events are stored, then notified, by the delivery worker: the reply never waits on them."""
        text, session_id, now, pending = turn.request.text, turn.session_id, self.clock(), self._pending()
        contacts = detection.contacts_in(text)
        made: list[tuple[str, Callable[[], Any]]] = [
            ("lead", lambda c=contact: Lead.create(session_id, c.email, c.name, c.notes, at=now, delivery=pending))
            for contact in contacts
        ]
        # A visitor leaving their address asks nothing, unless they ask it too.
        if not result.covered and (not contacts or "?" in text):
            made.append(("question", lambda: Question.create(session_id, detection.question_from(text), at=now,
                                                             delivery=pending)))
        for what, make in made:
            try:
                self.delivery.put(make(), store=True)
            except ValueError as exc:
                log.warning("a detected %s was not recorded: %s", what, exc)
            except TwinError as exc:
                log.error("a detected %s of session %s could not be stored (%s)", what, session_id,
                          type(exc).__name__)

    # -- reading, for the owner --------------------------------------------------

    def leads(self, limit: int | None = None) -> list[Lead]:
        found = sorted(self.store.leads(), key=lambda lead: (lead.created_at, lead.id), reverse=True)
        return found[:limit] if limit is not None else found

    def questions(self, limit: int | None = None) -> list[Question]:
        found = sorted(self.store.questions(), key=lambda q: (q.last_asked, q.id), reverse=True)
        return found[:limit] if limit is not None else found

    def delete_lead(self, lead_id: str) -> bool:
        return self.store.delete_lead(lead_id)

    def forget_session(self, session_id: str) -> int:
        """Erase a deleted conversation's events (those still queued included)."""
        return self.delivery.forget(session_id, lambda: self.store.delete_session(session_id))

    def expire(self, max_age: float, exists: Callable[[str], bool], *, now: float | None = None) -> int:
        """Erase the events, older than ``max_age`` seconds, of sessions whose conversation is gone (what
        ``twin-server sweep`` does after expiring conversations); returns how many sessions' events went."""
        cutoff = (time.time() if now is None else now) - max_age
        latest: dict[str, float] = {}
        for lead in self.store.leads():
            latest[lead.session_id] = max(latest.get(lead.session_id, 0.0), lead.created_at.timestamp())
        for question in self.store.questions():
            for session_id in question.session_ids:
                latest[session_id] = max(latest.get(session_id, 0.0), question.last_asked.timestamp())
        gone = [s for s, when in latest.items() if when < cutoff and not exists(s)]
        for session_id in gone:
            self.forget_session(session_id)
        return len(gone)

    def sessions_with_events(self, limit: int, cursor: str | None) -> tuple[list[SessionActivity], str | None]:
        """The default conversation listing: sessions that produced an event, latest event first."""
        latest: dict[str, datetime] = {}
        for lead in self.store.leads():
            latest[lead.session_id] = max(latest.get(lead.session_id, lead.created_at), lead.created_at)
        for question in self.store.questions():
            for session_id in question.session_ids:
                latest[session_id] = max(latest.get(session_id, question.last_asked), question.last_asked)
        ordered = sorted(latest.items(), key=lambda item: (item[1], item[0]), reverse=True)
        start = _offset(cursor)
        page = ordered[start:start + limit]
        more = start + limit < len(ordered)
        return [SessionActivity(s, t) for s, t in page], _cursor(start + limit) if more else None

    # -- redelivery ----------------------------------------------------------------

    def undelivered(self, *, now: float | None = None) -> list[Lead | Question]:
        """Events a selected notifier failed, or still has pending after ``REDELIVER_AFTER`` seconds."""
        now = time.time() if now is None else now
        names = set(self.delivery.names)
        found = []
        for event in [*self.store.leads(), *self.store.questions()]:
            when = event.created_at if isinstance(event, Lead) else event.first_asked
            for name, state in event.delivery.items():
                if name in names and (state == "failed" or
                                      (state == "pending" and now - when.timestamp() >= REDELIVER_AFTER)):
                    found.append(event)
                    break
        return found

    def redeliver(self, *, now: float | None = None) -> tuple[int, int]:
        """Deliver every undelivered event again, now; (delivered, still undelivered)."""
        delivered = failed = 0
        for event in self.undelivered(now=now):
            names = [n for n, state in event.delivery.items() if state != "delivered"]
            if self.delivery.deliver(event, names):
                delivered += 1
            else:
                failed += 1
        return delivered, failed


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = text.partition(":")
        if kind != "o" or not number.isdigit():
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor is not one this server gave") from None
