"""The offline model's replies as ``twin_server.Reply``: "not covered" marked, and cut at ``max_tokens``.

Tokens are counted the way ``/v1`` estimates them, one per four characters;
a reply longer than ``max_tokens`` of them is cut at the last space before
the limit, with ``finish_reason="length"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twin_server import Reply

CHARS_PER_TOKEN = 4


def offline_reply(text: str, options: Mapping[str, Any], *, covered: bool) -> Reply:
    limit = options.get("max_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 and len(text) > limit * CHARS_PER_TOKEN:
        cut = text[: limit * CHARS_PER_TOKEN]
        space = cut.rfind(" ")
        if space > len(cut) // 2:
            cut = cut[:space]
        return Reply(cut.rstrip(), finish_reason="length", covered=covered)
    return Reply(text, covered=covered)
