"""The backends plugins registered, by kind and name, and the ``register`` callback they were given."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from twin_server.backends.kinds import BY_NAME
from twin_server.backends.protocols import BackendContext, protocol_methods
from twin_server.errors import ConfigurationError

__all__ = ["BackendRegistry", "Registration", "check_protocol"]

Factory = Callable[[BackendContext], Any]


@dataclasses.dataclass(frozen=True)
class Registration:
    name: str
    factory: Factory
    plugin: str


class BackendRegistry:
    """The backends of one kind that plugins registered, by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._by_name: dict[str, Registration] = {}

    def add(self, name: str, factory: Factory, plugin: str) -> None:
        """Record a registration; a missing name, an uncallable factory or a clash is refused here."""
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

    @property
    def factories(self) -> Mapping[str, Factory]:
        """Name → factory of what is registered so far (what a wrapping plugin may build on)."""
        return {name: registration.factory for name, registration in self._by_name.items()}

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def registrations(self) -> list[Registration]:
        return [self._by_name[n] for n in self.names()]

    def get(self, name: str) -> Registration:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise ConfigurationError(
                f"unknown {self.kind} backend {name!r} (TWIN_{BY_NAME[self.kind].setting}); registered: {known}"
            ) from None


def check_protocol(kind: str, name: str, backend: object) -> None:
    """Refuse a backend that lacks a method of its protocol, naming what is missing."""
    protocol = BY_NAME[kind].protocol
    missing = [m for m in protocol_methods(protocol) if not callable(getattr(backend, m, None))]
    if missing:
        raise ConfigurationError(
            f"{kind} backend {name!r} does not implement {', '.join(missing)} ({protocol.__name__})"
        )
