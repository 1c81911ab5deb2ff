"""The HTTP API: chat, conversations (read a page at a time), health and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from twin_server.app_state import twin
from twin_server.errors import NotReady
from twin_server.http import paging
from twin_server.http.schemas import ConversationQuerySchema, chat_request, load_query
from twin_server.sessions import check_session_id

bp = Blueprint("twin_api", __name__)

READINESS_PROBE_SESSION = "readiness-probe"


@bp.post("/chat")
def chat() -> Response:
    turns = twin().turns
    result = turns.run(chat_request(turns.max_message_chars))
    return jsonify(
        response=result.response,
        session_id=result.session_id,
        history_loaded=result.history_loaded,
        history_saved=result.history_saved,
        sources=[source.to_dict() for source in result.sources],
    )


CONVERSATION_QUERY = ConversationQuerySchema()


@bp.get("/conversation/<session_id>")
def get_conversation(session_id: str) -> Response:
    """One page of the conversation, oldest first; ``next`` pages back (``twin_server.http.paging``)."""
    g.session_id = check_session_id(session_id)
    query = load_query(CONVERSATION_QUERY)
    live = twin().turns.live
    # The newest page ends with the turns still under way; taken before the read, so one stored meanwhile is in it.
    under_way = live.snapshot(session_id) if query["before"] is None else []
    page = paging.read_page(twin().backends.storage, session_id, query["limit"], query["before"])
    records = [m.to_dict() for m in page.messages] + live.records(session_id, page.messages, under_way)
    return jsonify(session_id=session_id, messages=records, next=page.next)


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
        for probe in state.readiness_probes:
            probe()
    except Exception as exc:
        not_ready = NotReady("not ready")
        not_ready.operation = getattr(exc, "operation", None)
        raise not_ready from exc
    return jsonify(status="ready", persona=persona.full_name, backends=state.backends.names())
