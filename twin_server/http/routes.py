"""The HTTP API: chat, conversations, health and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from twin_server.app_state import twin
from twin_server.errors import NotReady
from twin_server.http.schemas import chat_request
from twin_server.sessions import check_session_id

bp = Blueprint("twin_api", __name__)

READINESS_PROBE_SESSION = "readiness-probe"


@bp.post("/chat")
def chat() -> Response:
    result = twin().turns.run(chat_request())
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
    state = twin()
    state.backends.storage.delete(session_id)
    state.owner.forget_session(session_id)  # its leads and unanswered questions go with it
    return Response(status=204)


@bp.get("/health")
def health() -> Response:
    return jsonify(status="ok")


@bp.get("/ready")
def ready() -> Response:
    state = twin()
    try:
        persona = state.turns.persona()
        state.backends.storage.load(READINESS_PROBE_SESSION, 1)
    except Exception as exc:
        not_ready = NotReady("not ready")
        not_ready.operation = getattr(exc, "operation", None)
        raise not_ready from exc
    return jsonify(status="ready", persona=persona.full_name, backends=state.backends.names())
