"""The API's bodies as marshmallow schemas: the requests the routes validate, the responses they answer.

Request schemas validate; response schemas only describe (the routes build
their JSON directly, so answering costs nothing). Both are what
``twin_server.http.openapi`` turns into the OpenAPI document, so a field is
added here once and appears in the document. Response fields are
``required`` when the response always has them.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from flask import g, request
from marshmallow import INCLUDE, RAISE, Schema, fields, validate
from marshmallow import ValidationError as MarshmallowError

from twin_server.errors import ValidationError
from twin_server.http import paging
from twin_server.sessions import SESSION_ID_PATTERN, SESSION_ID_RULE, new_session_id
from twin_server.turn.turn import TurnRequest
from twin_server.types import ROLES


def json_body() -> object:
    """The decoded JSON body; Werkzeug's 415/400 when it is not JSON, 400 when nested too deeply."""
    try:
        return request.get_json()
    except RecursionError:  # json's decoder gives up on [[[[... thousands deep; the body is the client's
        raise ValidationError("The JSON body is nested too deeply.") from None


class FullMatch(validate.Regexp):
    """A ``Regexp`` the whole value must match (``re.match`` with ``$`` lets a trailing newline through).

    Its ``regex`` is what the OpenAPI document shows as the field's ``pattern``.
    """

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise MarshmallowError(self._format_error(value))
        return value


#: A character that is not whitespace by Python's ``str.isspace()``, spelt out: ``\S`` differs between
#: Python and JSON Schema's (ECMA-262) regular expressions (U+001C-U+001F, U+0085, U+FEFF).
NOT_SPACE = r"[^\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class NotBlank(validate.Regexp):
    """At least one character that is not whitespace (documented as that ``pattern``)."""

    def __init__(self, error: str) -> None:
        super().__init__(NOT_SPACE, error=error)

    def __call__(self, value: Any) -> Any:
        if self.regex.search(value) is None:
            raise MarshmallowError(self.error)
        return value


class StrictBoolean(fields.Boolean):
    """A JSON ``true`` or ``false`` only (marshmallow's Boolean also takes ``"yes"``, ``"on"``, ``1``...)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictFloat(fields.Float):
    """A JSON number only (marshmallow's Float also takes the string ``"1.5"``)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


MESSAGE_NOT_BLANK = NotBlank("Message must not be empty or whitespace.")


def is_unicode(value: str) -> bool:
    """False for a text with a lone surrogate (a ``"\\ud800"`` JSON escape): no store could keep it."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_unicode(value: str) -> None:
    """``is_unicode`` as a validator."""
    if not is_unicode(value):
        raise MarshmallowError("Must be valid Unicode text.")


#: The session-id rule of ``twin_server.sessions``, as a validator the document shows as a ``pattern``.
SESSION_ID = FullMatch(re.compile(f"^{SESSION_ID_PATTERN}$"), error=SESSION_ID_RULE)


#: The session id the document's examples use.
EXAMPLE_SESSION_ID = "visitor-0001"


def session_id_field(description: str = SESSION_ID_RULE, **kwargs: Any) -> fields.String:
    return fields.String(
        validate=SESSION_ID, metadata={"description": description, "example": EXAMPLE_SESSION_ID}, **kwargs
    )


class ChatRequestSchema(Schema):
    """``POST /chat`` and ``POST /chat/stream``: ``{"message": str, "session_id"?: str}``."""

    class Meta:
        unknown = RAISE

    message = fields.String(required=True, metadata={"description": "What the visitor says.", "example": "What do you do?"})
    session_id = session_id_field(
        f"The conversation to continue; a new one when absent or null ({SESSION_ID_RULE}).",
        load_default=None, allow_none=True,
    )

    def __init__(self, max_chars: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fields["message"].validators = [
            MESSAGE_NOT_BLANK,
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


_CHAT_FIELDS = frozenset(ChatRequestSchema._declared_fields)


def plain_chat_body(body: object, max_chars: int) -> dict[str, Any] | None:
    """``ChatRequestSchema(max_chars).load(body)`` for a body that passes it, decided without marshmallow;
    None for any other, which the schema then refuses with its own messages.

    Nearly every chat body is a valid one, and the schema's machinery was a tenth of
    a turn's own cost. The rules are the schema's (its validators' own regexes);
    a property test holds the two to the same answer.
    """
    if type(body) is not dict or not body.keys() <= _CHAT_FIELDS:
        return None
    message, session_id = body.get("message"), body.get("session_id")
    if (type(message) is not str or len(message) > max_chars or MESSAGE_NOT_BLANK.regex.search(message) is None
            or not is_unicode(message)):
        return None
    if session_id is not None and (type(session_id) is not str or SESSION_ID.regex.fullmatch(session_id) is None):
        return None
    return {"message": message, "session_id": session_id}


def chat_request(max_chars: int) -> TurnRequest:
    """The turn a ``POST /chat`` or ``/chat/stream`` body asks for (a new session when it names none).

    ``max_chars`` is the app's message limit (``TwinState.max_message_chars``), which the route has at hand.
    """
    body = json_body()
    data = plain_chat_body(body, max_chars) or load_body(chat_request_schema(max_chars), body)
    session_id = data["session_id"] or new_session_id()
    g.session_id = session_id
    return TurnRequest(session_id, data["message"], new_session=data["session_id"] is None)


# --- path parameters -------------------------------------------------------------


class SessionPathSchema(Schema):
    """``/conversation/<session_id>``."""

    session_id = session_id_field(required=True)


# --- responses ----------------------------------------------------------------------


class SourceSchema(Schema):
    """A persona passage a reply was based on."""

    id = fields.String(required=True, metadata={"description": "Stable id, e.g. facts.json#location or faq.md#why-boats."})
    title = fields.String(required=True)


def sources_field(
    description: str = "The persona passages the reply was based on; [] when the persona does not cover it.",
    **options: Any,
) -> fields.List:
    return fields.List(fields.Nested(SourceSchema), metadata={"description": description}, **options)


class ChatReplySchema(Schema):
    """One answered turn: ``POST /chat``'s body and the data of ``/chat/stream``'s ``done`` event."""

    response = fields.String(required=True, metadata={"description": "The twin's reply."})
    session_id = session_id_field(required=True)
    history_loaded = fields.Boolean(
        required=True, metadata={"description": "False when the stored history could not be read (the turn went on without it)."}
    )
    history_saved = fields.Boolean(required=True, metadata={"description": "False when the turn could not be stored."})
    sources = sources_field(required=True)


class StreamSessionSchema(Schema):
    """``/chat/stream``'s first event."""

    session_id = session_id_field(required=True)


class StreamDeltaSchema(Schema):
    """A piece of the reply."""

    text = fields.String(required=True)


class StoredMessageSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = fields.String(required=True)
    timestamp = fields.DateTime(required=True)
    complete = fields.Boolean(metadata={"description": "Present (false) only on a reply cut short."})
    sources = sources_field()


class ConversationSchema(Schema):
    """A stored conversation, oldest message first (``[]`` for an unknown session)."""

    session_id = session_id_field(required=True)
    messages = fields.List(fields.Nested(StoredMessageSchema), required=True)
    next = fields.String(
        required=True, allow_none=True,
        metadata={"description": "the cursor of the previous page (send it as ?before=); null at the start"},
    )


class HealthSchema(Schema):
    status = fields.Constant("ok", required=True)


class ReadySchema(Schema):
    status = fields.Constant("ready", required=True)
    persona = fields.String(required=True, metadata={"description": "The persona's full name."})
    backends = fields.Dict(
        keys=fields.String(), values=fields.String(), required=True,
        metadata={"description": "The backend selected for each kind (storage, persona, secrets, llm, ...)."},
    )


class ProfileSchema(Schema):
    """What the chat page shows in its header."""

    name = fields.String(required=True)
    intro = fields.String(required=True)
    model = fields.String(required=True, metadata={"description": "The LLM backend's name."})


class ProblemSchema(Schema):
    """An RFC 9457 problem document (``application/problem+json``); 5xx details never quote an exception."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, metadata={"description": "urn:twin-server:problem:<slug>, or about:blank for HTTP errors."})
    title = fields.String(required=True)
    status = fields.Integer(required=True, validate=validate.Range(400, 599))
    detail = fields.String(required=True)
    request_id = fields.String(required=True, metadata={"description": "The response's X-Request-ID."})
    errors = fields.Raw(metadata={"description": "400: marshmallow's messages, field by field."})
    retry_after = fields.Integer(validate=validate.Range(min=1), metadata={"description": "Seconds, as in Retry-After."})
    operation = fields.String(metadata={"description": "5xx: the kind of backend that failed (storage, persona, secrets, llm)."})
