"""Backend protocols and the by-name registry that picks one of each kind."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from twin_server.errors import ConfigurationError
from twin_server.types import Message, Persona, Prompt

#: Operation kinds, in the order their backends are built.
KINDS: tuple[str, ...] = ("secrets", "storage", "persona", "llm")

#: The config key that selects each kind, its hook, and the default name.
SELECTORS: dict[str, tuple[str, str, str]] = {
    "secrets": ("SECRETS", "register_secret_providers", "env"),
    "storage": ("STORAGE", "register_storage_backends", "filesystem"),
    "persona": ("PERSONA", "register_persona_sources", "filesystem"),
    "llm": ("LLM", "register_llm_backends", "offline"),
}


@runtime_checkable
class ConversationStore(Protocol):
    def load(self, session_id: str, limit: int | None = None) -> list[Message]:
        """All messages of the session, oldest first; only the last ``limit`` when given."""

    def append(self, session_id: str, messages: Sequence[Message]) -> None:
        """Append all of ``messages`` or none of them; concurrent appends never lose each other."""

    def delete(self, session_id: str) -> bool:
        """Erase the session; True when something was there."""


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
    def complete(self, prompt: Prompt) -> str:
        """The whole reply."""

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """The reply as text pieces, as they are generated."""


PROTOCOLS: dict[str, type] = {
    "storage": ConversationStore,
    "persona": PersonaSource,
    "secrets": SecretsProvider,
    "llm": LLMBackend,
}


@dataclasses.dataclass(frozen=True)
class BackendContext:
    """What a backend factory is given: the config, a way to read secrets, its own name."""

    config: Mapping[str, Any]
    secret: Callable[[str], str]
    name: str = ""
    kind: str = ""


@dataclasses.dataclass(frozen=True)
class Registration:
    name: str
    factory: Callable[[BackendContext], Any]
    plugin: str


class BackendRegistry:
    """The backends of one kind that plugins registered, by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._by_name: dict[str, Registration] = {}

    def register_for(self, plugin: str) -> Callable[[str, Callable[[BackendContext], Any]], None]:
        def register(name: str, factory: Callable[[BackendContext], Any]) -> None:
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"plugin {plugin!r} registered a {self.kind} backend with no name")
            if not callable(factory):
                raise ConfigurationError(
                    f"plugin {plugin!r} registered {self.kind} backend {name!r} with a factory that is not callable"
                )
            existing = self._by_name.get(name)
            if existing is not None:
                raise ConfigurationError(
                    f"{self.kind} backend {name!r} is registered twice: by plugin {existing.plugin!r} "
                    f"and by plugin {plugin!r}"
                )
            self._by_name[name] = Registration(name, factory, plugin)

        return register

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def registrations(self) -> list[Registration]:
        return [self._by_name[n] for n in self.names()]

    def get(self, name: str) -> Registration:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            key = SELECTORS[self.kind][0]
            raise ConfigurationError(
                f"unknown {self.kind} backend {name!r} (TWIN_{key}); registered: {known}"
            ) from None


def check_protocol(kind: str, name: str, backend: object) -> None:
    """Refuse a backend that lacks a method of its protocol, naming what is missing."""
    protocol = PROTOCOLS[kind]
    missing = [m for m in _protocol_methods(protocol) if not callable(getattr(backend, m, None))]
    if missing:
        raise ConfigurationError(
            f"{kind} backend {name!r} does not implement {', '.join(missing)} ({protocol.__name__})"
        )


def _protocol_methods(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]
