"""Streamed turns still under way, so a reload in the middle of a reply shows it.

A streamed turn is stored once, when it ends. Until then ``GET
/conversation/<id>`` would not show it: a visitor who reloads the page while
the twin is still answering found an empty conversation. The turn registers
here when its first piece is in hand and leaves once it is stored; the route
adds each registered turn of the session (the visitor's message and the reply
so far, ``"in_progress": true``) after the stored messages. This covers the
worker process that runs the stream; another worker sees the turn once it is
stored.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from twin_server.types import Message

__all__ = ["LiveTurns"]


class LiveTurns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_session: dict[str, dict[int, tuple[Any, Any]]] = {}

    def begin(self, turn: Any, reply: Any) -> None:
        with self._lock:
            self._by_session.setdefault(turn.session_id, {})[id(turn)] = (turn, reply)

    def end(self, turn: Any) -> None:
        with self._lock:
            turns = self._by_session.get(turn.session_id)
            if turns is not None:
                turns.pop(id(turn), None)
                if not turns:
                    del self._by_session[turn.session_id]

    def snapshot(self, session_id: str) -> list[tuple[Message, str]]:
        """(the visitor's message, the reply so far) of each turn of the session under way, oldest first."""
        with self._lock:
            entries = list(self._by_session.get(session_id, {}).values())
        entries.sort(key=lambda entry: entry[0].user_message.timestamp)
        return [(turn.user_message, reply.text) for turn, reply in entries]

    def records(self, session_id: str, stored: Sequence[Message], snapshot: list[tuple[Message, str]]) -> list[dict]:
        """The records to show after ``stored`` for a ``snapshot`` taken before it was read."""
        have = {(m.timestamp, m.content) for m in stored if m.role == "user"}
        out: list[dict] = []
        for user, partial in snapshot:
            if (user.timestamp, user.content) in have:
                continue  # stored meanwhile
            out.append(user.to_dict())
            out.append({"role": "assistant", "content": partial, "timestamp": user.to_dict()["timestamp"],
                        "complete": False, "in_progress": True})
        return out
