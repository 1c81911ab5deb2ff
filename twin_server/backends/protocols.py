"""What a backend is: the protocol of each kind, and the context its factory is given."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from twin_server.config import Settings
from twin_server.events import Lead, Question
from twin_server.types import Message, Persona, Prompt, Summary

__all__ = [
    "BackendContext", "ConversationStore", "EventStore", "LLMBackend", "Notifier", "PersonaSource", "SecretsProvider",
    "SummaryStore", "protocol_methods",
]


@runtime_checkable
class ConversationStore(Protocol):
    """A conversation store. Two methods are optional (the core has a documented default for each):

    ``event_store() -> EventStore``
        where the owner's events (leads, unanswered questions) are kept, next
        to the conversations. Without it they are kept on this machine's disk
        under ``TWIN_DATA_DIR/owner-events`` (logged at startup).
    ``sessions(limit, cursor=None) -> (list[SessionActivity], next_cursor | None)``
        the stored conversations, last written first, ``limit`` at a time;
        ``cursor`` is the opaque string a previous page returned. Without it,
        ``GET /owner/conversations`` lists the conversations that produced an event.

    And one optional attribute: ``local = True`` says its calls never wait on
    another machine (files on this machine's disk), so the core may make a
    summary without a model in the turn's own thread instead of the summary thread.
    """

    def load(self, session_id: str, limit: int | None = None) -> list[Message]:
        """All messages of the session, oldest first; only the last ``limit`` when given."""

    def append(self, session_id: str, messages: Sequence[Message]) -> None:
        """Append all of ``messages`` or none of them; concurrent appends never lose each other."""

    def delete(self, session_id: str) -> bool:
        """Erase the session; True when something was there."""


class SummaryStore(Protocol):
    """Optional for a ConversationStore: it keeps each session's rolling summary beside it.

    A store without these methods still works: the core keeps its summaries in the
    server's memory instead (per process, lost on restart). ``delete`` must erase the
    summary with the session, and ``save_summary`` must not recreate an erased session.
    """

    def load_summary(self, session_id: str) -> Summary | None:
        """The session's summary, or None."""

    def save_summary(self, session_id: str, summary: Summary) -> None:
        """Replace the session's summary (nothing is saved for a session that does not exist)."""


@runtime_checkable
class PersonaSource(Protocol):
    def load(self) -> Persona:
        """The current persona; raises PersonaError when it is missing or invalid."""


@runtime_checkable
class SecretsProvider(Protocol):
    def get(self, name: str) -> str:
        """The secret's value; raises ConfigurationError saying how to provide a missing one."""


@runtime_checkable
class LLMBackend(Protocol):
    """Optional extras the core uses when present: ``count_tokens(text) -> int`` (the model's own
    tokenizer, for the token budget), ``summarises = True`` (``complete`` may be asked for the
    rolling summary of a conversation), and ``prompt.cite(ids)`` to name the passages a reply used."""

    def complete(self, prompt: Prompt) -> str:
        """The whole reply."""

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """The reply as text pieces, as they are generated."""


@runtime_checkable
class EventStore(Protocol):
    """The owner's events. Ids are made by the core (``Lead.id``, ``Question.id``), so a store dedups
    by id; every method may be called from several threads and processes at once.

    One optional attribute: ``local = True`` says its calls never wait on another machine; with every
    selected notifier local too, a request's events are stored and notified in its own thread once its
    response is sent, instead of being handed to the notify thread (``twin_server.owner.delivery``)."""

    def record_lead(self, lead: Lead) -> bool:
        """Store ``lead`` unless one with its id exists; True when it was stored (and is to be notified)."""

    def record_question(self, question: Question) -> bool:
        """Store ``question`` (asked once), or merge it into the entry with its id (``Question.merged``);
        True when the entry is new (and is to be notified)."""

    def leads(self) -> list[Lead]:
        """Every lead, in any order."""

    def questions(self) -> list[Question]:
        """Every unanswered question, in any order."""

    def delete_lead(self, lead_id: str) -> bool:
        """Erase one lead; True when it was there."""

    def delete_session(self, session_id: str) -> int:
        """Erase the session's events: its leads, and its asks of each question (``Question.without_session``,
        erasing an entry left with none). Returns how many entries were erased or changed. An event of the
        session made before the erasure and stored after it, by any process, is not kept either
        (``DocumentEventStore`` keeps a record of each erasure an hour for that)."""

    def set_delivery(self, kind: str, event_id: str, states: Mapping[str, str]) -> None:
        """Record what notifiers did with an event (``kind``: ``lead`` | ``unanswered``; ``states``: notifier
        name → ``delivered`` | ``failed``), in the event's ``delivery``; an event erased meanwhile stays erased."""


@runtime_checkable
class Notifier(Protocol):
    """Tells the owner of an event. One optional attribute: ``local = True`` says ``notify`` never waits on
    another machine (the ``log`` notifier), so it may run in a request's thread (``EventStore``'s ``local``)."""

    def notify(self, event: Lead | Question, timeout: float | None) -> None:
        """Deliver one event to the owner within ``timeout`` seconds (None: no deadline); raise a
        TransientError for what is worth retrying. ``twin_server.describe(event)`` is the usual payload."""


def protocol_methods(protocol: type) -> list[str]:
    """The methods a backend of ``protocol`` must have."""
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]


@dataclasses.dataclass(frozen=True)
class BackendContext:
    """What a backend factory is given.

    ``config`` is the app's configuration mapping and ``settings`` the typed
    reader over it (``context.settings.get_int("S3_CHUNK_MESSAGES", default=50,
    minimum=1)``); ``secret(name)`` reads a secret through the selected secrets
    provider; ``name`` and ``kind`` say what the backend was selected as.
    """

    config: Mapping[str, Any]
    secret: Callable[[str], str]
    name: str = ""
    kind: str = ""

    @property
    def settings(self) -> Settings:
        return Settings(self.config)
