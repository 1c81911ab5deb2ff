"""Request validation: marshmallow schemas and the session-id rule."""

from __future__ import annotations

import functools
import re
from typing import Any

from marshmallow import RAISE, Schema, fields, validate
from marshmallow import ValidationError as MarshmallowError

from twin_server.errors import ValidationError

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,128}")
SESSION_ID_RULE = "session_id must be 8 to 128 characters of A-Z, a-z, 0-9, '_' and '-'"


def check_session_id(value: object) -> str:
    if not isinstance(value, str) or SESSION_ID.fullmatch(value) is None:
        raise ValidationError(SESSION_ID_RULE)
    return value


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
    if SESSION_ID.fullmatch(value) is None:
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
