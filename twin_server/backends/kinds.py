"""The one table of backend kinds: what selects each, its hook, protocol, retrying wrapper, timeout, wording.

Adding a kind is a row here (plus its hookspec and protocol): the registry,
the builder, the retry policies, the timeouts, the startup checks and the
problem documents all read this table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from twin_server.backends import protocols, retrying

__all__ = ["KINDS", "BY_NAME", "BackendKind", "operation_names", "selector_defaults"]


@dataclasses.dataclass(frozen=True)
class BackendKind:
    name: str  # the operation name the retry layer, logs, metrics and problems use
    setting: str  # the selector, without TWIN_
    default: str  # the backend selected when the setting is absent
    hook: str  # the register_* hook that collects this kind
    protocol: type
    wrapper: type  # the core's retrying wrapper
    timeout: float  # default of TWIN_<NAME>_TIMEOUT, seconds (0: no deadline)
    noun: str  # how a problem document names it: "the conversation store is unavailable"
    many: bool = False  # the selector is a comma-separated list (several backends at once; none is allowed)

    @property
    def timeout_setting(self) -> str:
        return f"{self.name.upper()}_TIMEOUT"


#: In the order the backends are built: the secrets provider first, so the others can read secrets.
KINDS: tuple[BackendKind, ...] = (
    BackendKind("secrets", "SECRETS", "env", "register_secret_providers", protocols.SecretsProvider,
                retrying.RetryingSecrets, 5.0, "the secrets provider"),
    BackendKind("storage", "STORAGE", "filesystem", "register_storage_backends", protocols.ConversationStore,
                retrying.RetryingStore, 5.0, "the conversation store"),
    BackendKind("persona", "PERSONA", "filesystem", "register_persona_sources", protocols.PersonaSource,
                retrying.RetryingPersona, 5.0, "the persona"),
    BackendKind("llm", "LLM", "offline", "register_llm_backends", protocols.LLMBackend,
                retrying.RetryingLLM, 60.0, "the language model"),
    BackendKind("notify", "NOTIFY", "log", "register_notifiers", protocols.Notifier,
                retrying.RetryingNotifier, 30.0, "the notifier", many=True),
)
BY_NAME: Mapping[str, BackendKind] = {kind.name: kind for kind in KINDS}


def selector_defaults() -> dict[str, Any]:
    """The config defaults the table implies: each selector and each timeout."""
    defaults: dict[str, Any] = {}
    for kind in KINDS:
        defaults[kind.setting] = kind.default
        defaults[kind.timeout_setting] = kind.timeout
    return defaults


def operation_names() -> dict[str, str]:
    """Operation → how a problem document names it."""
    return {kind.name: kind.noun for kind in KINDS}
