"""What one request spent: its backend calls, their time, retries and LLM tokens.

A ``RequestRecord`` is started for every HTTP request (``twin_server.observability``)
and kept in a context variable, so the retry layer's attempt observer and a
backend deep inside a call can add to it without being handed anything. At the
end of the request it becomes one log line and a few metric samples.

Token usage is a small, optional convention for LLM backends: after a call
whose vendor reported usage, call::

    from twin_server.telemetry.usage import report_usage
    report_usage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)

Outside a request (the terminal chat, a script) it does nothing. This module
imports nothing heavy, so a plugin can import it freely.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
from collections.abc import Callable

__all__ = ["BackendUse", "RequestRecord", "current", "report_usage", "start", "stop"]


@dataclasses.dataclass(slots=True)
class BackendUse:
    """One operation kind's calls during one request."""

    backend: str
    calls: int = 0
    attempts: int = 0
    errors: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "calls": self.calls,
            "attempts": self.attempts,
            "errors": self.errors,
            "ms": round(self.seconds * 1000, 2),
        }


@dataclasses.dataclass(slots=True)
class RequestRecord:
    """The accumulator of one request; only the request's own thread writes to it."""

    request_id: str = ""
    started: float = dataclasses.field(default_factory=time.perf_counter)
    backends: dict[str, BackendUse] = dataclasses.field(default_factory=dict)
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def attempt(self, operation: str, backend: str, attempt: int, seconds: float, failed: bool) -> None:
        use = self.backends.get(operation)
        if use is None:
            use = self.backends[operation] = BackendUse(backend)
        use.attempts += 1
        use.seconds += seconds
        use.errors += failed
        if attempt == 1:
            use.calls += 1
        else:
            self.retries += 1

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("twin_request_record", default=None)


def start(request_id: str = "") -> RequestRecord:
    """Begin a fresh record for the request now running in this context."""
    record = RequestRecord(request_id)
    _current.set(record)
    return record


#: ``current()``: the record of the request running in this context, or None. The context
#: variable's own ``get``, so the per-attempt observer pays no Python call to reach it.
current: Callable[[], RequestRecord | None] = _current.get


def stop() -> None:
    _current.set(None)


def report_usage(input_tokens: int | None = None, output_tokens: int | None = None) -> None:
    """An LLM backend reports the tokens one call used (where its vendor tells)."""
    record = _current.get()
    if record is None:
        return
    record.input_tokens += max(0, int(input_tokens or 0))
    record.output_tokens += max(0, int(output_tokens or 0))
