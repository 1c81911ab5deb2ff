"""The per-app state every route reads, kept in ``app.extensions`` (never a global)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pluggy
from flask import current_app

from twin_server.turn.chat import ChatService
from twin_server.error_registry import ErrorRegistry
from twin_server.backends.retrying import Backends

EXTENSION_KEY = "twin_server"


@dataclasses.dataclass
class TwinState:
    plugin_manager: pluggy.PluginManager
    backends: Backends
    errors: ErrorRegistry
    chat: ChatService
    max_message_chars: int
    registered: Mapping[str, list[Any]]


def twin() -> TwinState:
    return current_app.extensions[EXTENSION_KEY]
