"""The per-app state every route reads, kept in ``app.extensions`` (never a global)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pluggy
from flask import current_app

from twin_server.backends.building import Backends
from twin_server.error_registry import ErrorRegistry
from twin_server.http.problems import Renderers
from twin_server.turn.turn import Turns

EXTENSION_KEY = "twin_server"


@dataclasses.dataclass
class TwinState:
    plugin_manager: pluggy.PluginManager
    backends: Backends
    errors: ErrorRegistry
    turns: Turns
    renderers: Renderers
    registered: Mapping[str, list[Any]]
    #: Called by ``/ready`` after the persona and the store; raise when the app cannot serve chats.
    readiness_probes: list[Callable[[], None]] = dataclasses.field(default_factory=list)
    #: The owner's events (``twin_server.owner.recorder.OwnerEvents``).
    owner: Any = None

    @property
    def max_message_chars(self) -> int:
        return self.turns.max_message_chars


def twin() -> TwinState:
    return current_app.extensions[EXTENSION_KEY]
