"""``POST /chat/stream``: one chat turn answered as Server-Sent Events.

Events, each with one JSON ``data`` line::

    event: session   {"session_id"}                                   first
    event: delta     {"text"}                                         a piece of the reply
    event: done      {"session_id", "response", "history_loaded", "history_saved"}
    event: error     a problem document                               the LLM failed mid-stream

Everything that can fail before the first piece of the reply (validation,
the persona, the LLM's first piece, after the core's retries) fails before
the response starts, as an ordinary problem response. The turn is stored once,
whatever the ending: complete, just before ``done``; marked incomplete
(``"complete": false``) with what was sent when the LLM fails mid-stream or
the client goes away. A ``: keep-alive`` comment goes out after every
``TWIN_SSE_HEARTBEAT`` seconds (default 15, 0 turns it off) without a piece.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, stream_with_context

from twin_server import config as settings
from twin_server.http import sse
from twin_server.http.routes import chat_request
from twin_server.turn.chat import ChatService, PreparedTurn
from twin_server.errors import ConfigurationError
from twin_server.app_state import twin

bp = Blueprint("twin_streaming", __name__)

HEARTBEAT_SETTING = "SSE_HEARTBEAT"
DEFAULT_HEARTBEAT = 15.0


def heartbeat_seconds(config: Mapping[str, Any]) -> float:
    """``TWIN_SSE_HEARTBEAT``; ConfigurationError when it is not a number ≥ 0."""
    return settings.get_float(config, HEARTBEAT_SETTING, DEFAULT_HEARTBEAT, minimum=0)


def check(config: Mapping[str, Any]) -> list[str]:
    """The problem with ``TWIN_SSE_HEARTBEAT``, for ``create_app``'s StartupError."""
    try:
        heartbeat_seconds(config)
    except ConfigurationError as exc:
        return [str(exc)]
    return []


def install(app: Flask) -> None:
    """Register ``/chat/stream`` (after ``check`` found no problem)."""
    app.register_blueprint(bp)


class ReplyStream:
    """One reply streamed from the LLM, whose turn is finished exactly once.

    ``start`` asks the LLM for the reply; the core's ``RetryingLLM.stream`` has
    the first piece in hand (retried until it arrives) before it returns, so a
    failure up to then raises before any byte of the response is sent. Iterating
    gives the pieces (``None`` when a heartbeat is due) and remembers each as
    delivered. ``finish`` stores the turn with what was delivered, once; with
    ``store=False`` (a stateless /v1 call) it only stops the LLM.
    """

    def __init__(
        self, chat: ChatService, turn: PreparedTurn, pieces: Iterator[str], *, store: bool, heartbeat: float
    ) -> None:
        self.chat, self.turn, self.store = chat, turn, store
        self.relay = sse.Relay(pieces, heartbeat)
        self.delivered: list[str] = []
        self.history_saved: bool | None = None
        self._finished = False
        self._lock = threading.Lock()

    @classmethod
    def start(cls, chat: ChatService, turn: PreparedTurn, *, store: bool, heartbeat: float) -> "ReplyStream":
        return cls(chat, turn, chat.stream(turn), store=store, heartbeat=heartbeat)

    def __iter__(self) -> Iterator[str | None]:
        for piece in self.relay:
            if piece is not None:
                self.delivered.append(piece)
            yield piece

    @property
    def text(self) -> str:
        return "".join(self.delivered)

    def finish(self, *, complete: bool) -> bool | None:
        """Store the turn (first call only) and stop the LLM; the result of storing, None when not stored."""
        with self._lock:
            if self._finished:
                return self.history_saved
            self._finished = True
        self.relay.stop()
        if self.store:
            self.history_saved = self.chat.finish(self.turn, self.text, complete=complete)
        return self.history_saved


def event_stream(events: Iterator[str], reply: ReplyStream) -> Response:
    """The streaming response. The WSGI server closes it however it ends (PEP 3333), also when
    the client has gone; the turn is then finished, as incomplete unless it already was."""
    response = Response(stream_with_context(events), mimetype=sse.CONTENT_TYPE, headers=sse.HEADERS)
    response.call_on_close(lambda: reply.finish(complete=False))
    return response


def error_document(exc: Exception) -> Any:
    """The JSON the app's error handler answers ``exc`` with, logged like any failed request:
    a problem document (OpenAI's error envelope under /v1)."""
    return current_app.handle_user_exception(exc).get_json()


def relay_events(
    reply: ReplyStream,
    piece_event: Callable[[str], str],
    error_event: Callable[[Exception], str],
) -> Generator[str, None, bool]:
    """The pieces as events, with heartbeats; returns True when the reply ended normally.

    When the LLM fails mid-stream, the partial turn is stored incomplete and
    ``error_event``'s event is the last. After a normal end the caller finishes
    the turn; a stream closed early is finished by ``event_stream``.
    """
    try:
        for piece in reply:
            yield sse.HEARTBEAT if piece is None else piece_event(piece)
    except Exception as exc:
        reply.finish(complete=False)
        yield error_event(exc)
        return False
    return True


@bp.post("/chat/stream")
def chat_stream() -> Response:
    session_id, message = chat_request()
    state = twin()
    turn = state.chat.prepare(session_id, message)
    reply = ReplyStream.start(state.chat, turn, store=True, heartbeat=heartbeat_seconds(current_app.config))
    return event_stream(_events(reply), reply)


def _events(reply: ReplyStream) -> Iterator[str]:
    turn = reply.turn
    yield sse.encode({"session_id": turn.session_id}, "session")

    def error_event(exc: Exception) -> str:
        return sse.encode(error_document(exc), "error")

    if not (yield from relay_events(reply, lambda piece: sse.encode({"text": piece}, "delta"), error_event)):
        return
    saved = reply.finish(complete=True)
    yield sse.encode(
        {
            "session_id": turn.session_id,
            "response": reply.text,
            "history_loaded": turn.history_loaded,
            "history_saved": saved,
        },
        "done",
    )
