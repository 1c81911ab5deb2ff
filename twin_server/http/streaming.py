"""``POST /chat/stream``: one chat turn answered as Server-Sent Events.

Events, each with one JSON ``data`` line::

    event: session   {"session_id"}                                   first
    event: delta     {"text"}                                         a piece of the reply
    event: done      {"session_id", "response", "history_loaded", "history_saved", "sources"}
    event: error     a problem document                               the LLM failed mid-stream

Everything that can fail before the first piece of the reply (validation,
the persona, the LLM's first piece, after the core's retries) fails before
the response starts, as an ordinary problem response. The turn is stored once,
whatever the ending: complete, just before ``done``; marked incomplete
(``"complete": false``) with what was sent when the LLM fails mid-stream or
the client goes away. A ``: keep-alive`` comment goes out after every
``TWIN_SSE_HEARTBEAT`` seconds without a piece.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Flask, Response, current_app

from twin_server.app_state import twin
from twin_server.http import sse
from twin_server.http.schemas import chat_request
from twin_server.turn.turn import StreamedReply

bp = Blueprint("twin_streaming", __name__)


def install(app: Flask) -> None:
    """Register ``/chat/stream``, and the worker's relay readers every stream shares (``/v1``'s too)."""
    sse.install(app)
    app.register_blueprint(bp)


@bp.post("/chat/stream")
def chat_stream() -> Response:
    state = twin()
    turn = state.turns.prepare(chat_request(state.max_message_chars))
    heartbeat = sse.heartbeat_seconds(current_app.config)
    reply = turn.stream(relay=lambda pieces: sse.Relay(pieces, heartbeat))
    return sse.event_response(_events(reply), lambda: reply.finish(complete=False))


def _events(reply: StreamedReply) -> Iterator[str]:
    state = twin()
    yield sse.encode({"session_id": reply.turn.session_id}, "session")

    def error_event(exc: Exception) -> str:
        return sse.encode(state.renderers.body(state.errors, exc), "error")

    if not (yield from sse.relay_events(reply, lambda piece: sse.encode({"text": piece}, "delta"), error_event)):
        return
    result = reply.finish(complete=True)
    yield sse.encode(
        {
            "session_id": result.session_id,
            "response": result.response,
            "history_loaded": result.history_loaded,
            "history_saved": result.history_saved,
            "sources": [source.to_dict() for source in result.sources],
        },
        "done",
    )
