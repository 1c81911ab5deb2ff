"""The OpenAI-compatible API under ``/v1``: any chat client or SDK can talk to the twin.

``GET /v1/models`` lists the twin as one model (``TWIN_MODEL_ID``, default a
slug of the persona's name); ``POST /v1/chat/completions`` answers OpenAI's
``chat.completion``, or with ``"stream": true`` a ``chat.completion.chunk``
event stream ending with ``data: [DONE]``. Stateless like OpenAI's API: the
prompt is the persona's, then the client's messages (its ``system`` and
``developer`` messages as instructions after the persona's, which they cannot
replace). With a body field ``session_id`` the new user message and the reply
are also stored in that conversation. Usage counts are estimates,
``ceil(characters / 4)``. Errors use OpenAI's envelope, with the status of the
core's registry.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import unicodedata
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from twin_server.http import sse
from twin_server.http.routes import json_body
from twin_server.turn.chat import new_session_id
from twin_server.errors import NotFound
from twin_server.http.openai.schema import Completion, CompletionRequestSchema, completion_from
from twin_server.error_registry import PROBLEM_TYPE_PREFIX, Problem
from twin_server.http.schemas import check_session_id, load_body
from twin_server.app_state import twin
from twin_server.http.streaming import ReplyStream, error_document, event_stream, heartbeat_seconds, relay_events
from twin_server.types import Persona, Prompt

URL_PREFIX = "/v1"
EXTENSION_KEY = "twin_openai_compat"
OWNER = "twin-server"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}

bp = Blueprint("twin_openai_compat", __name__, url_prefix=URL_PREFIX)


def install(app: Flask) -> None:
    app.extensions[EXTENSION_KEY] = {"created": int(time.time())}
    app.register_blueprint(bp)


# --- errors ---------------------------------------------------------------------


def is_openai_request() -> bool:
    """True for a request under ``/v1`` (matched or not), whose errors take OpenAI's envelope."""
    return request.path == URL_PREFIX or request.path.startswith(URL_PREFIX + "/")


def error_body(problem: Problem) -> dict[str, Any]:
    status = problem.status
    kind = ERROR_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    message, param = problem.detail, None
    details = _flatten(problem.extras.get("errors")) if status < 500 else []
    if details:
        param = details[0][0]
        message = f"{message} " + "; ".join(f"{field}: {text}" for field, text in details)
    if problem.type.startswith(PROBLEM_TYPE_PREFIX):
        code = problem.type[len(PROBLEM_TYPE_PREFIX):]
    else:
        code = problem.title.lower()
    return {"error": {"message": message, "type": kind, "param": param, "code": re.sub(r"[^a-z0-9]+", "_", code)}}


def error_response(problem: Problem) -> Response:
    response = jsonify(error_body(problem))
    response.status_code = problem.status
    response.headers.update(problem.headers)
    return response


def _flatten(errors: Any, path: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested messages as ("messages.0.role", "Must be one of: ...") pairs."""
    if isinstance(errors, dict):
        return [pair for key, value in errors.items() for pair in _flatten(value, f"{path}.{key}".lstrip("."))]
    if isinstance(errors, list):
        return [pair for item in errors for pair in _flatten(item, path)]
    return [(path, str(errors))] if errors is not None else []


# --- models ---------------------------------------------------------------------


def model_id(persona: Persona) -> str:
    """``TWIN_MODEL_ID``, else the persona's name as a slug ("Ada Quill" → "ada-quill")."""
    configured = str(current_app.config.get("MODEL_ID") or "").strip()
    if configured:
        return configured
    ascii_name = unicodedata.normalize("NFKD", persona.full_name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "twin"


def _model(persona: Persona) -> dict[str, Any]:
    created = current_app.extensions[EXTENSION_KEY]["created"]
    return {"id": model_id(persona), "object": "model", "created": created, "owned_by": OWNER}


@bp.get("/models")
def list_models() -> Response:
    return jsonify(object="list", data=[_model(twin().chat.persona())])


@bp.get("/models/<path:model>")
def get_model(model: str) -> Response:
    described = _model(twin().chat.persona())
    if model != described["id"]:
        raise NotFound(f"The model {model!r} does not exist; this server serves {described['id']!r}.")
    return jsonify(described)


# --- chat completions -----------------------------------------------------------


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _usage(prompt: Prompt, reply: str) -> dict[str, int]:
    asked = estimate_tokens(prompt.system) + sum(estimate_tokens(m.content) for m in prompt.messages)
    answered = estimate_tokens(reply)
    return {"prompt_tokens": asked, "completion_tokens": answered, "total_tokens": asked + answered}


@dataclasses.dataclass(frozen=True)
class _Reply:
    """What every object of one completion shares."""

    id: str
    created: int
    model: str

    def head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "system_fingerprint": None}


@bp.post("/chat/completions")
def chat_completions() -> Response:
    state = twin()
    asked = completion_from(load_body(CompletionRequestSchema(state.max_message_chars), json_body()))
    if asked.session_id is not None:
        g.session_id = check_session_id(asked.session_id)
    # A stateless call is a session of its own (never stored): per-session caps must not lump calls together.
    session_id = asked.session_id or new_session_id()
    turn = state.chat.prepare(session_id, asked.text, instructions=asked.instructions, history=asked.history)
    turn.prompt = dataclasses.replace(turn.prompt, options=asked.options)
    reply = _Reply(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model_id(turn.prompt.persona))
    store = asked.session_id is not None
    if asked.stream:
        pieces = ReplyStream.start(state.chat, turn, store=store, heartbeat=heartbeat_seconds(current_app.config))
        return event_stream(_chunks(pieces, reply, asked), pieces)
    text = state.backends.llm.complete(turn.prompt)
    if store:
        state.chat.finish(turn, text)
    message = {"role": "assistant", "content": text, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    return jsonify({**reply.head("chat.completion"), "choices": [choice], "usage": _usage(turn.prompt, text)})


def _chunks(pieces: ReplyStream, reply: _Reply, asked: Completion) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        data = {**reply.head("chat.completion.chunk"), "choices": [choice]}
        if asked.include_usage:
            data["usage"] = None
        return sse.encode(data)

    yield chunk({"role": "assistant", "content": ""})
    events = relay_events(pieces, lambda piece: chunk({"content": piece}), lambda exc: sse.encode(error_document(exc)))
    if not (yield from events):
        return
    pieces.finish(complete=True)
    yield chunk({}, "stop")
    if asked.include_usage:
        usage = _usage(pieces.turn.prompt, pieces.text)
        yield sse.encode({**reply.head("chat.completion.chunk"), "choices": [], "usage": usage})
    yield sse.DONE
