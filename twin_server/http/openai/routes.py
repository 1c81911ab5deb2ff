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
core's registry. Replies carry the persona passages they are based on in an
extension field, ``twin_sources`` (``[{"id", "title"}]``): on the completion,
and on a stream's last chunk (the one with ``finish_reason``).
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

from flask import Blueprint, Flask, Response, current_app, g, jsonify

from twin_server.app_state import twin
from twin_server.errors import NotFound
from twin_server.http import sse
from twin_server.http.openai.errors import OpenAIErrors
from twin_server.http.openai.schema import Completion, CompletionRequestSchema, completion_from
from twin_server.http.schemas import json_body, load_body
from twin_server.sessions import check_session_id, new_session_id
from twin_server.turn.turn import StreamedReply, TurnRequest
from twin_server.types import Persona, Prompt

URL_PREFIX = "/v1"
EXTENSION_KEY = "twin_openai_compat"
OWNER = "twin-server"

bp = Blueprint("twin_openai_compat", __name__, url_prefix=URL_PREFIX)


def install(app: Flask) -> None:
    app.extensions[EXTENSION_KEY] = {"created": int(time.time())}
    app.extensions["twin_server"].renderers.register(URL_PREFIX, OpenAIErrors())
    app.register_blueprint(bp)


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
    return jsonify(object="list", data=[_model(twin().turns.persona())])


@bp.get("/models/<path:model>")
def get_model(model: str) -> Response:
    described = _model(twin().turns.persona())
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
    turn = state.turns.prepare(
        TurnRequest(
            session_id=asked.session_id or new_session_id(),
            text=asked.text,
            instructions=asked.instructions,
            history=asked.history,
            store=asked.session_id is not None,
            options=asked.options,
        )
    )
    reply = _Reply(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model_id(turn.prompt.persona))
    if asked.stream:
        heartbeat = sse.heartbeat_seconds(current_app.config)
        pieces = turn.stream(relay=lambda source: sse.Relay(source, heartbeat))
        return sse.event_response(_chunks(pieces, reply, asked), lambda: pieces.finish(complete=False))
    result = turn.reply()
    message = {"role": "assistant", "content": result.response, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": result.finish_reason}
    usage = _usage(result.prompt, result.response)
    return jsonify({**reply.head("chat.completion"), "choices": [choice], "usage": usage,
                    "twin_sources": [source.to_dict() for source in result.sources]})


def _chunks(pieces: StreamedReply, reply: _Reply, asked: Completion) -> Iterator[str]:
    state = twin()

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        data = {**reply.head("chat.completion.chunk"), "choices": [choice], **extra}
        if asked.include_usage:
            data["usage"] = None
        return sse.encode(data)

    def error_event(exc: Exception) -> str:
        return sse.encode(state.renderers.body(state.errors, exc))

    yield chunk({"role": "assistant", "content": ""})
    if not (yield from sse.relay_events(pieces, lambda piece: chunk({"content": piece}), error_event)):
        return
    result = pieces.finish(complete=True)
    yield chunk({}, result.finish_reason if result is not None else "stop",
                twin_sources=[source.to_dict() for source in result.sources] if result is not None else [])
    if asked.include_usage:
        usage = _usage(result.prompt, result.response)
        yield sse.encode({**reply.head("chat.completion.chunk"), "choices": [], "usage": usage})
    yield sse.DONE
