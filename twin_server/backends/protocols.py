"""What a backend is: the protocol of each kind, and the context its factory is given."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from twin_server.config import Settings
from twin_server.types import Message, Persona, Prompt, Summary

__all__ = ["BackendContext", "ConversationStore", "LLMBackend", "PersonaSource", "SecretsProvider", "SummaryStore",
           "protocol_methods"]


@runtime_checkable
class ConversationStore(Protocol):
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
