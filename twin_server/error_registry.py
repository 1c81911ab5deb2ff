"""The central error-to-status registry and its RFC 9457 problem documents.

Every failure of a request ends here. The registry maps exception classes to
statuses; an exception is resolved by walking its ``__mro__``, most specific
class first (as Flask finds error handlers). Only 4xx problems show the
exception's message; 5xx problems get a fixed sentence naming the failing
operation, never exception text, paths or traces.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from werkzeug.exceptions import HTTPException

from twin_server import errors

PROBLEM_TYPE_PREFIX = "urn:twin-server:problem:"

_SERVER_SENTENCES = {
    500: "{op} failed; the server log has the details.",
    502: "{op} refused the request; the server log has the details.",
    503: "{op} is unavailable; try again later.",
    504: "{op} did not answer in time; try again later.",
}


@dataclasses.dataclass(frozen=True)
class ErrorEntry:
    exc_class: type[BaseException]
    status: int | None  # None: take the status from the exception (Werkzeug's HTTP errors)
    title: str | None
    slug: str


@dataclasses.dataclass(frozen=True)
class Problem:
    """What a failed request answers, before it is rendered for a given API."""

    status: int
    title: str
    detail: str
    type: str
    headers: dict[str, str]
    exception: BaseException
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    def document(self, request_id: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "request_id": request_id,
            **self.extras,
        }


def _slug(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()


class ErrorRegistry:
    """Exception class → status, filled by the core and by plugins' ``register_errors``."""

    def __init__(self, operation_names: Mapping[str, str] | None = None) -> None:
        self._entries: dict[type[BaseException], ErrorEntry] = {}
        #: operation → how a 5xx problem names it ("the conversation store"), from the table of backend kinds.
        self.operation_names: Mapping[str, str] = dict(operation_names or {})

    def register(self, exc_class: type[BaseException], status: int | None, title: str | None = None) -> None:
        if not (isinstance(exc_class, type) and issubclass(exc_class, BaseException)):
            raise errors.ConfigurationError(f"register_errors: {exc_class!r} is not an exception class")
        if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
            raise errors.ConfigurationError(
                f"register_errors: status for {exc_class.__name__} must be an HTTP error status (400-599), not {status!r}"
            )
        self._entries[exc_class] = ErrorEntry(exc_class, status, title, _slug(exc_class))

    def lookup(self, exc: BaseException) -> ErrorEntry:
        for cls in type(exc).__mro__:
            entry = self._entries.get(cls)
            if entry is not None:
                return entry
        return self._entries[Exception]

    def resolve(self, exc: BaseException) -> Problem:
        entry = self.lookup(exc)
        headers: dict[str, str] = {}
        extras: dict[str, Any] = {}
        if isinstance(exc, HTTPException) and entry.status is None:
            status = exc.code or 500
            title = exc.name
            detail = exc.description or title
            kind = "about:blank"
            if isinstance(getattr(exc, "valid_methods", None), (list, tuple)):
                headers["Allow"] = ", ".join(exc.valid_methods)
        else:
            status = entry.status or 500
            title = entry.title or _default_title(entry.exc_class)
            kind = PROBLEM_TYPE_PREFIX + entry.slug
            detail = str(exc) if status < 500 and str(exc) else self._server_sentence(status, exc)
            if status < 500 and getattr(exc, "messages", None):
                extras["errors"] = exc.messages
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after >= 0 and status in (429, 503):
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            extras["retry_after"] = int(headers["Retry-After"])
        operation = getattr(exc, "operation", None)
        if operation in self.operation_names and status >= 500:
            extras["operation"] = operation
        return Problem(status, title, detail, kind, headers, exc, extras)

    def _server_sentence(self, status: int, exc: BaseException) -> str:
        op = self.operation_names.get(getattr(exc, "operation", None) or "")
        if op is None:
            return "The server could not complete the request; the server log has the details."
        sentence = _SERVER_SENTENCES.get(status, _SERVER_SENTENCES[500]).format(op=op)
        return sentence[:1].upper() + sentence[1:]


def _default_title(cls: type) -> str:
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", cls.__name__)
    return words[:1].upper() + words[1:].lower()


def core_registry(operation_names: Mapping[str, str] | None = None) -> ErrorRegistry:
    """The registry with the core's own mappings; plugins add theirs on top."""
    registry = ErrorRegistry(operation_names)
    for exc_class, status, title in (
        (Exception, 500, "Internal server error"),
        (HTTPException, None, None),
        (errors.TwinError, 500, "Internal server error"),
        (errors.ConfigurationError, 500, "Server misconfigured"),
        (errors.PersonaError, 500, "Persona unavailable"),
        (errors.BackendError, 502, "Backend refused the request"),
        (errors.ValidationError, 400, "Invalid request"),
        (errors.HistoryTooLong, 400, "Conversation too long"),
        (errors.NotFound, 404, "Not found"),
        (errors.LimitExceeded, 429, "Limit reached"),
        (errors.NotReady, 503, "Not ready"),
        (errors.TransientError, 503, "Service unavailable"),
        (errors.BackendUnavailable, 503, "Service unavailable"),
        (errors.RateLimited, 503, "Service busy"),
        (errors.BackendTimeout, 504, "Timed out"),
    ):
        registry.register(exc_class, status, title)
    return registry
