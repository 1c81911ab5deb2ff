"""Every backend call goes through here: the core's retry, deadline and budget per operation.

Each selected backend sits behind a wrapper that runs its calls through a
``Retrier`` built from the operation's policy (``retry_policy`` hook, then
``TWIN_RETRY_*`` / ``TWIN_RETRY_<KIND>_*`` settings) and deadline
(``TWIN_<KIND>_TIMEOUT``).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from twin_server import config as settings
from twin_server.errors import ConfigurationError
from twin_server.retry import AttemptObserver, Retrier, RetryBudget, RetryConfig, tag
from twin_server.telemetry.redaction import register_secret
from twin_server.types import Message, Persona, Prompt, Summary

__all__ = [
    "RetryFactory", "RetryingLLM", "RetryingNotifier", "RetryingPersona", "RetryingSecrets", "RetryingStore",
    "retry_config_for", "timeout_for",
]

_FIELDS = {
    "MAX_ATTEMPTS": ("max_attempts", settings.get_int),
    "INITIAL_DELAY": ("initial_delay", settings.get_float),
    "MAX_DELAY": ("max_delay", settings.get_float),
    "EXPONENTIAL_BASE": ("exponential_base", settings.get_float),
    "JITTER": ("jitter", settings.get_bool),
}


def retry_config_for(operation: str, config: Mapping[str, Any], plugin_policy: RetryConfig | None) -> RetryConfig:
    """The policy for one operation kind: the plugin's (or the defaults), then settings on top."""
    policy = plugin_policy or RetryConfig()
    changes: dict[str, Any] = {}
    for prefix in ("RETRY_", f"RETRY_{operation.upper()}_"):
        for suffix, (field, read) in _FIELDS.items():
            if prefix + suffix in config:
                changes[field] = read(config, prefix + suffix)
    try:
        return dataclasses.replace(policy, **changes)
    except ValueError as exc:
        raise ConfigurationError(f"retry settings for {operation}: {exc}") from None


def timeout_for(operation: str, config: Mapping[str, Any]) -> float | None:
    value = settings.get_float(config, f"{operation.upper()}_TIMEOUT", minimum=0)
    return value or None


@dataclasses.dataclass
class RetryFactory:
    """Builds the ``Retrier`` of each operation; one budget per backend for the app's life."""

    policies: Mapping[str, RetryConfig]
    timeouts: Mapping[str, float | None]
    observer: Callable[[str, str], AttemptObserver | None] = lambda operation, backend: None
    retrier_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __call__(self, operation: str, backend: str) -> Retrier:
        return Retrier(
            self.policies[operation],
            operation=operation,
            backend=backend,
            timeout=self.timeouts[operation],
            budget=RetryBudget(),
            observer=self.observer(operation, backend),
            **self.retrier_options,
        )


class _Wrapped:
    def __init__(self, backend: Any, name: str, retrier: Retrier) -> None:
        self.backend, self.name, self.retrier = backend, name, retrier

    def __getattr__(self, attr: str) -> Any:
        # Anything beyond the protocol (e.g. a plugin's own extras) is reached directly, unretried.
        return getattr(self.backend, attr)


class MemorySummaries:
    """Where the summaries of a store without ``load_summary``/``save_summary`` live: this process's
    memory, the newest ``maxsize`` sessions (lost on restart, not shared between processes)."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, Summary] = OrderedDict()
        self._lock = threading.Lock()

    def load_summary(self, session_id: str) -> Summary | None:
        with self._lock:
            return self._items.get(session_id)

    def save_summary(self, session_id: str, summary: Summary) -> None:
        with self._lock:
            self._items[session_id] = summary
            self._items.move_to_end(session_id)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._items.pop(session_id, None)


class RetryingStore(_Wrapped):
    """A store behind the retry; ``load_summary``/``save_summary`` are optional for a store (the
    rolling summary, issue 13): without them, summaries are kept in ``MemorySummaries``."""

    def __init__(self, backend: Any, name: str, retrier: Retrier) -> None:
        super().__init__(backend, name, retrier)
        own = callable(getattr(backend, "load_summary", None)) and callable(getattr(backend, "save_summary", None))
        self.summaries = None if own else MemorySummaries()

    def load(self, session_id: str, limit: int | None = None) -> list[Message]:
        return self.retrier.call(self.backend.load, session_id, limit)

    def append(self, session_id: str, messages: Sequence[Message]) -> None:
        self.retrier.call(self.backend.append, session_id, list(messages))

    def delete(self, session_id: str) -> bool:
        if self.summaries is not None:
            self.summaries.delete(session_id)
        return bool(self.retrier.call(self.backend.delete, session_id))

    def load_summary(self, session_id: str) -> Summary | None:
        if self.summaries is not None:
            return self.summaries.load_summary(session_id)
        return self.retrier.call(self.backend.load_summary, session_id)

    def save_summary(self, session_id: str, summary: Summary) -> None:
        if self.summaries is not None:
            self.summaries.save_summary(session_id, summary)
        else:
            self.retrier.call(self.backend.save_summary, session_id, summary)


class RetryingPersona(_Wrapped):
    def load(self) -> Persona:
        return self.retrier.call(self.backend.load)


class RetryingSecrets(_Wrapped):
    def get(self, name: str) -> str:
        value = self.retrier.call(self.backend.get, name)
        register_secret(value)  # no log line may show it, whoever writes the line
        return value


class RetryingLLM(_Wrapped):
    def complete(self, prompt: Prompt) -> str:
        return self.retrier.run(lambda left: self.backend.complete(prompt.with_timeout(left)))

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """Retries until the first piece arrives; after that a failure reaches the caller."""

        def first(left: float | None) -> tuple[Iterator[str], list[str]]:
            pieces = iter(self.backend.stream(prompt.with_timeout(left)))
            return pieces, list(itertools.islice(pieces, 1))

        pieces, head = self.retrier.run(first)
        return _chain(head, pieces, self.retrier)


class RetryingNotifier(_Wrapped):
    def notify(self, event: Any, timeout: float | None = None) -> None:
        """Each attempt is told the time left before the deadline (``TWIN_NOTIFY_TIMEOUT``)."""
        self.retrier.run(lambda left: self.backend.notify(event, left))


def _chain(head: list[str], rest: Iterator[str], retrier: Retrier) -> Iterator[str]:
    yield from head
    try:
        yield from rest
    except Exception as exc:
        tag(exc, retrier.operation, retrier.backend)
        raise
