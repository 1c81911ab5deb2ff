"""The HTTP API: chat, conversations, health and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request

from twin_server import limits
from twin_server.errors import NotReady, ValidationError
from twin_server.chat import new_session_id
from twin_server.schemas import chat_request_schema, check_session_id, load_body
from twin_server.state import twin

bp = Blueprint("twin_api", __name__)

READINESS_PROBE_SESSION = "readiness-probe"


def json_body() -> object:
    """The decoded JSON body; Werkzeug's 415/400 when it is not JSON, 400 when nested too deeply."""
    try:
        return request.get_json()
    except RecursionError:  # json's decoder gives up on [[[[... thousands deep; the body is the client's
        raise ValidationError("The JSON body is nested too deeply.") from None


def chat_request() -> tuple[str, str]:
    """Validate a chat body; returns (session_id, message)."""
    state = twin()
    data = load_body(chat_request_schema(state.max_message_chars), json_body())
    session_id = data["session_id"] or new_session_id()
    g.session_id = session_id
    return session_id, data["message"]


@bp.post("/chat")
def chat() -> Response:
    session_id, message = chat_request()
    result = twin().chat.turn(session_id, message)
    return jsonify(
        response=result.response,
        session_id=result.session_id,
        history_loaded=result.history_loaded,
        history_saved=result.history_saved,
    )


@bp.get("/conversation/<session_id>")
def get_conversation(session_id: str) -> Response:
    g.session_id = check_session_id(session_id)
    messages = twin().backends.storage.load(session_id)
    return jsonify(session_id=session_id, messages=[m.to_dict() for m in messages])


@bp.delete("/conversation/<session_id>")
def delete_conversation(session_id: str) -> Response:
    g.session_id = check_session_id(session_id)
    twin().backends.storage.delete(session_id)
    return Response(status=204)


@bp.get("/health")
def health() -> Response:
    return jsonify(status="ok")


@bp.get("/ready")
def ready() -> Response:
    state = twin()
    try:
        persona = state.chat.persona()
        state.backends.storage.load(READINESS_PROBE_SESSION, 1)
        limits.ping(current_app)  # with the rate-limit storage down every chat is refused
    except Exception as exc:
        not_ready = NotReady("not ready")
        not_ready.operation = getattr(exc, "operation", None)
        raise not_ready from exc
    return jsonify(status="ready", persona=persona.full_name, backends=state.backends.names())
