"""What one route says about itself in the OpenAPI document: an ``Operation``.

An operation names a Flask *endpoint* (``"twin_api.chat"``): its path, path
parameters and method come from the app's URL map, so the document cannot
drift from the routing. Everything else is marshmallow schemas:

``body``       the JSON request body: a schema (class or instance), or a function of the
               app returning one (for limits read from the configuration)
``path``       a schema whose fields are the path parameters (others are plain strings)
``query``      a schema whose fields are the query parameters
``responses``  status → what it answers:
               - a schema: ``application/json`` with that schema;
               - ``None``: no body (a 204);
               - ``{media_type: schema | None}`` for anything else, e.g. ``{"text/plain": None}``;
               - for ``text/event-stream``: ``{"text/event-stream": {event_name: data}}``, where
                 ``data`` is the schema of the event's JSON ``data`` line, or a list of
                 alternatives in which a string is a literal ``data`` value (``"[DONE]"``);
                 events without an ``event:`` line are named ``message``
``errors``     the error statuses the route itself can answer (``BACKEND_ERRORS``, 404, 429, ...).
               The builder adds those every route of its kind can answer: 500 always, 400/413/415
               with a body, 400 with query or validated path parameters, 404 with path
               parameters, 401 where a key is required; each with the error schema of the
               route's API (problem+json, or OpenAI's envelope under ``/v1``)
``security``   names of security schemes that are always required (``("OwnerKey",)``); by default
               the API-key policy decides, path by path, from the configuration
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

#: What a route that calls a backend can answer: refused (502), unavailable (503), too slow (504).
BACKEND_ERRORS = (502, 503, 504)
#: What a chat turn can answer beyond that: a rate limit or a per-session cap (429).
TURN_ERRORS = (429, *BACKEND_ERRORS)

SchemaLike = Any  # a marshmallow Schema class or instance
BodySpec = SchemaLike | Callable[[Any], SchemaLike] | None


@dataclasses.dataclass(frozen=True)
class Operation:
    endpoint: str
    summary: str
    description: str = ""
    method: str | None = None  # which of the endpoint's methods, when it has several
    body: BodySpec = None
    path: SchemaLike | None = None
    query: SchemaLike | None = None
    responses: Mapping[int, Any] = dataclasses.field(default_factory=dict)
    errors: tuple[int, ...] = ()
    security: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    operation_id: str | None = None  # default: the endpoint's view name ("twin_api.chat" → "chat")

    @property
    def id(self) -> str:
        return self.operation_id or self.endpoint.rpartition(".")[2]


def operation(endpoint: str, summary: str, **details: Any) -> Operation:
    """Build an ``Operation``; ``TypeError`` names a detail that does not exist."""
    known = {field.name for field in dataclasses.fields(Operation)}
    unknown = sorted(set(details) - known)
    if unknown:
        raise TypeError(f"unknown OpenAPI detail(s) for {endpoint!r}: {', '.join(unknown)}; use {', '.join(sorted(known - {'endpoint', 'summary'}))}")
    if "errors" in details:
        details["errors"] = tuple(details["errors"])
    if details.get("security") is not None:
        details["security"] = tuple(details["security"])
    if "tags" in details:
        details["tags"] = tuple(details["tags"])
    return Operation(endpoint, summary, **details)
