"""``GET /openapi.json``: the app's OpenAPI 3.1 document, generated from its routes and schemas.

``install`` runs at the end of ``create_app``, after the plugins' ``startup``
hooks have added their routes: it collects the core's operations
(``core.OPERATIONS``) and the plugins' (the ``register_openapi`` hook), builds
the document once and keeps its bytes; the route only sends them. Plugins
document a route with ``register(endpoint, summary, **details)`` (the details
of ``operation.Operation``); an undocumented route is not in the document.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app

from twin_server.app_state import EXTENSION_KEY as TWIN_KEY
from twin_server.errors import ConfigurationError, StartupError
from twin_server.http.openapi import core
from twin_server.http.openapi.builder import build
from twin_server.http.openapi.operation import BACKEND_ERRORS, TURN_ERRORS, Operation, operation
from twin_server.plugin_manager import call_register_hook

__all__ = ["BACKEND_ERRORS", "TURN_ERRORS", "Operation", "document_of", "dumps", "install", "operation"]

EXTENSION_KEY = "twin_openapi"
PATH = "/openapi.json"
TITLE = "twin-server"
DESCRIPTION = """\
A digital twin of a person: a chatbot that answers in their voice from their persona.

Every error is an RFC 9457 problem document (`application/problem+json`), except under `/v1`, which \
answers OpenAI's error envelope; 5xx problems never quote an exception. Every response carries \
`X-Request-ID`. A method a path does not list answers 405 with `Allow`.

This document describes the server that serves it: its limits (TWIN_MAX_MESSAGE_CHARS is the \
`maxLength` of a message) and where it needs an API key (TWIN_API_KEYS, TWIN_PUBLIC_CHAT) come from \
its configuration."""

bp = Blueprint("twin_openapi", __name__)


@dataclasses.dataclass(frozen=True)
class Document:
    content: dict[str, Any]
    body: bytes


def dumps(document: dict[str, Any]) -> str:
    """The document as served and as checked in: indented, keys in a stable order, one final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@bp.get(PATH)
def document() -> Response:
    return Response(current_app.extensions[EXTENSION_KEY].body, mimetype="application/json")


def document_of(app: Flask) -> dict[str, Any]:
    return app.extensions[EXTENSION_KEY].content


def install(app: Flask) -> None:
    """Route ``/openapi.json`` and build the document (after every other route exists)."""
    from twin_server import __version__

    app.register_blueprint(bp)
    state = app.extensions[TWIN_KEY]
    documented: list[Operation] = []
    problems: list[str] = []

    def register(endpoint: str, summary: str, *, plugin: str, **details: Any) -> None:
        try:
            documented.append(operation(endpoint, summary, **details))
        except TypeError as exc:
            problems.append(f"{plugin}: {exc}")

    call_register_hook(state.plugin_manager, "register_openapi", register)
    try:
        content = build(
            app, core.OPERATIONS, documented, title=TITLE, version=__version__, description=DESCRIPTION, tags=core.TAGS
        )
    except ConfigurationError as exc:
        problems.append(str(exc))
    if problems:
        raise StartupError(problems)
    app.extensions[EXTENSION_KEY] = Document(content, dumps(content).encode())
