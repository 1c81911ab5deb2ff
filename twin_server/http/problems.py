"""Rendering a failed request: one resolved ``Problem``, rendered by the renderer of its API.

The app's error handler, and a stream that fails after its response has
started, both come here: the exception is resolved through the central
registry and logged once (``resolve_and_log``), then the renderer registered
for the request's path turns the ``Problem`` into a body. Renderers:
RFC 9457 ``application/problem+json`` (the default), OpenAI's error envelope
(under ``/v1``, registered by ``twin_server.http.openai``); an SSE ``error``
event carries the body of its API's renderer.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from flask import Response, g, jsonify, request

from twin_server.error_registry import ErrorRegistry, Problem
from twin_server.errors import LimitExceeded

__all__ = ["PROBLEM_JSON", "ProblemJson", "ProblemRenderer", "Renderers", "resolve_and_log"]

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger("twin_server")


class ProblemRenderer(Protocol):
    def body(self, problem: Problem, request_id: str) -> dict[str, Any]:
        """The JSON body describing ``problem`` (also the data of an SSE error event)."""

    def response(self, problem: Problem, request_id: str) -> Response:
        """The whole error response."""


class ProblemJson:
    """RFC 9457: ``application/problem+json``."""

    def body(self, problem: Problem, request_id: str) -> dict[str, Any]:
        return problem.document(request_id)

    def response(self, problem: Problem, request_id: str) -> Response:
        response = jsonify(self.body(problem, request_id))
        response.status_code = problem.status
        response.mimetype = PROBLEM_JSON
        response.headers.update(problem.headers)
        return response


class Renderers:
    """Which renderer answers a path: the longest registered prefix, else problem+json."""

    def __init__(self) -> None:
        self.default: ProblemRenderer = ProblemJson()
        self._by_prefix: dict[str, ProblemRenderer] = {}

    def register(self, prefix: str, renderer: ProblemRenderer) -> None:
        self._by_prefix[prefix.rstrip("/")] = renderer

    def for_path(self, path: str) -> ProblemRenderer:
        best = ""
        for prefix in self._by_prefix:
            if (path == prefix or path.startswith(prefix + "/")) and len(prefix) > len(best):
                best = prefix
        return self._by_prefix[best] if best else self.default

    def response(self, registry: ErrorRegistry, exc: BaseException) -> Response:
        """The error response of the current request for ``exc`` (resolved and logged)."""
        problem = resolve_and_log(registry, exc)
        return self.for_path(request.path).response(problem, g.get("request_id") or "")

    def body(self, registry: ErrorRegistry, exc: BaseException) -> dict[str, Any]:
        """The body alone, for a stream whose response has already started (resolved and logged)."""
        problem = resolve_and_log(registry, exc)
        return self.for_path(request.path).body(problem, g.get("request_id") or "")


def resolve_and_log(registry: ErrorRegistry, exc: BaseException) -> Problem:
    """Resolve an exception through the app's registry and log it with its context."""
    problem = registry.resolve(exc)
    context = {
        "request_id": g.get("request_id"),
        "session_id": g.get("session_id"),
        "operation": getattr(exc, "operation", None),
        "backend": getattr(exc, "backend", None),
        "status": problem.status,
    }
    described = " ".join(f"{k}={v}" for k, v in context.items() if v is not None)
    # A spent allowance (the daily budget is a 503) is policy working, not a failure: no trace.
    if problem.status >= 500 and not isinstance(exc, LimitExceeded):
        log.error("request failed: %s %s", type(exc).__name__, described, exc_info=exc, extra={"problem": context})
    else:
        log.warning("request refused: %s %s", type(exc).__name__, described, extra={"problem": context})
    return problem
