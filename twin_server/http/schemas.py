"""Request bodies: the JSON decoding every route shares, and the marshmallow schemas."""

from __future__ import annotations

import functools
from typing import Any

from flask import g, request
from marshmallow import RAISE, Schema, fields, validate
from marshmallow import ValidationError as MarshmallowError

from twin_server.app_state import twin
from twin_server.errors import ValidationError
from twin_server.http import paging
from twin_server.sessions import SESSION_ID_RULE, is_session_id, new_session_id
from twin_server.turn.turn import TurnRequest


def json_body() -> object:
    """The decoded JSON body; Werkzeug's 415/400 when it is not JSON, 400 when nested too deeply."""
    try:
        return request.get_json()
    except RecursionError:  # json's decoder gives up on [[[[... thousands deep; the body is the client's
        raise ValidationError("The JSON body is nested too deeply.") from None


def _not_blank(value: str) -> None:
    if not value.strip():
        raise MarshmallowError("Message must not be empty or whitespace.")


def valid_unicode(value: str) -> None:
    """Refuse lone surrogates (a ``"\\ud800"`` JSON escape): no store could keep them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MarshmallowError("Must be valid Unicode text.") from None


def _session_id(value: str) -> None:
    if not is_session_id(value):
        raise MarshmallowError(SESSION_ID_RULE)


class ChatRequestSchema(Schema):
    """``POST /chat`` and ``POST /chat/stream``: ``{"message": str, "session_id"?: str}``."""

    class Meta:
        unknown = RAISE

    message = fields.String(required=True)
    session_id = fields.String(load_default=None, allow_none=True, validate=_session_id)

    def __init__(self, max_chars: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fields["message"].validators = [
            _not_blank,
            valid_unicode,
            validate.Length(max=max_chars, error=f"Message must be at most {max_chars} characters."),
        ]


@functools.lru_cache(maxsize=8)
def chat_request_schema(max_chars: int) -> ChatRequestSchema:
    """One schema per limit: building a marshmallow schema costs more than validating with it."""
    return ChatRequestSchema(max_chars)


def load_body(schema: Schema, body: object) -> dict[str, Any]:
    """Validate a decoded JSON body, turning marshmallow's error into the core's 400."""
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    try:
        return schema.load(body)
    except MarshmallowError as exc:
        error = ValidationError("The request body is invalid.")
        error.messages = exc.messages
        raise error from exc


class ConversationQuerySchema(Schema):
    """``GET /conversation/<session_id>``'s query: ``?limit=`` and ``?before=`` (see ``twin_server.http.paging``)."""

    class Meta:
        unknown = RAISE

    limit = fields.Integer(
        load_default=paging.DEFAULT_LIMIT,
        validate=validate.Range(1, paging.MAX_LIMIT, error=f"Must be 1 to {paging.MAX_LIMIT}."),
        metadata={"description": f"messages in the page (default {paging.DEFAULT_LIMIT}, at most {paging.MAX_LIMIT})"},
    )
    before = fields.String(
        load_default=None,
        validate=validate.Regexp(paging.CURSOR_PATTERN, error="Must be the 'next' value of a previous page."),
        metadata={"description": "the 'next' cursor of the page after this one (opaque); none: the newest page"},
    )


def load_query(schema: Schema) -> dict[str, Any]:
    """Validate the query string (its first value of each parameter), turning marshmallow's error into a 400."""
    try:
        return schema.load(request.args.to_dict())
    except MarshmallowError as exc:
        error = ValidationError("The query string is invalid.")
        error.messages = exc.messages
        raise error from exc


def chat_request() -> TurnRequest:
    """The turn a ``POST /chat`` or ``/chat/stream`` body asks for (a new session when it names none)."""
    data = load_body(chat_request_schema(twin().turns.max_message_chars), json_body())
    session_id = data["session_id"] or new_session_id()
    g.session_id = session_id
    return TurnRequest(session_id, data["message"])
