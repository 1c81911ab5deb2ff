"""Pages of a stored conversation for ``GET /conversation/<id>?limit=&before=``.

A page is up to ``limit`` messages (default ``DEFAULT_LIMIT``, at most
``MAX_LIMIT``), oldest first: without ``before`` the newest ones, with it
those just older than the page whose ``next`` it is. ``next`` is null on the
page that reaches the start of the conversation.

The cursor is opaque to clients. It holds how many of the newest messages the
pages so far cover, and a hash of the oldest of them (the anchor). The store is
asked only through ``ConversationStore.load(session_id, limit)`` — no other
method — for the last ``seen + limit + 1`` messages: a page near the newest end
costs a page, one near the start reads the conversation from its end up to
there. When the conversation grew since the cursor was made (the visitor chats
on while paging back), the anchor is found further from the end and the page
continues right before it: no message twice, none skipped (the page may then
hold fewer than ``limit`` messages; only a null ``next`` means the start). A
cursor whose anchor is no longer among the messages read (the conversation was
deleted, or grew by more than a page meanwhile) is a 400: start again without
``before``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from twin_server.errors import ValidationError
from twin_server.types import Message

__all__ = ["CURSOR_PATTERN", "DEFAULT_LIMIT", "MAX_LIMIT", "Page", "read_page"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
CURSOR_PATTERN = re.compile(r"([1-9][0-9]{0,8})\.([0-9a-f]{16})")


@dataclasses.dataclass(frozen=True)
class Page:
    messages: list[Message]
    next: str | None


def fingerprint(message: Message) -> str:
    text = f"{message.role}\0{message.timestamp.isoformat()}\0{message.content}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def read_page(store: Any, session_id: str, limit: int, before: str | None = None) -> Page:
    """The page of ``limit`` messages before the cursor ``before`` (the newest page without it)."""
    seen, anchor = _parse(before)
    wanted = seen + limit + 1  # one more than the page: is there anything older?
    loaded = store.load(session_id, wanted)
    end = len(loaded) if anchor is None else _anchor_index(loaded, seen, anchor)
    start = max(0, end - limit)
    messages = loaded[start:end]
    older = start > 0 or len(loaded) == wanted
    if not messages or not older:
        return Page(messages, None)
    return Page(messages, f"{len(loaded) - start}.{fingerprint(messages[0])}")


def _parse(before: str | None) -> tuple[int, str | None]:
    if before is None:
        return 0, None
    match = CURSOR_PATTERN.fullmatch(before)
    if match is None:
        raise ValidationError("before must be the 'next' value of a previous page.")
    return int(match.group(1)), match.group(2)


def _anchor_index(loaded: list[Message], seen: int, anchor: str) -> int:
    """Where the oldest message of the pages so far is now: ``seen`` from the end, or further if messages came since."""
    for index in range(len(loaded) - seen, -1, -1):
        if fingerprint(loaded[index]) == anchor:
            return index
    raise ValidationError(
        "This conversation changed since that page was read (it was deleted, or grew by more than a page); "
        "ask again without 'before'."
    )
