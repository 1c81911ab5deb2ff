"""The session-id rule, written once: the HTTP schemas, the CLI and every store use it."""

from __future__ import annotations

import re
import uuid

from twin_server.errors import ValidationError

__all__ = ["SESSION_ID_PATTERN", "SESSION_ID_RULE", "check_session_id", "is_session_id", "new_session_id"]

#: What a session id may be: safe as a file name, an S3 key part or a DynamoDB key, never a path.
SESSION_ID_PATTERN = r"[A-Za-z0-9_-]{8,128}"
SESSION_ID_RULE = "session_id must be 8 to 128 characters of A-Z, a-z, 0-9, '_' and '-'"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


def is_session_id(value: object) -> bool:
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


def check_session_id(value: object) -> str:
    """``value`` when it is a valid session id; ``ValidationError`` (a 400) otherwise."""
    if not is_session_id(value):
        raise ValidationError(SESSION_ID_RULE)
    return value  # type: ignore[return-value]


def new_session_id() -> str:
    """A fresh session id: a uuid4, 122 random bits."""
    return str(uuid.uuid4())
