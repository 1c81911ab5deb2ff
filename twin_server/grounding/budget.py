"""What fits in a request of ``TWIN_CONTEXT_TOKENS``, and what is cut, in which order.

Pure arithmetic over token counts, so it can be tested exhaustively. A
request is the system prompt plus the messages. Its parts, in order of
priority, each taken only as far as it fits in what the parts before it left:

1. the rules, the core facts and the new message: never cut (``fixed``,
   ``message``); when they alone exceed the budget, ``Overflow``;
2. the persona's knowledge, up to its share (``share`` of the room the fixed
   parts leave): the whole of it when it fits there, else the passages most
   relevant to the question, best first;
3. a ``/v1`` client's extra instructions (whole, or not at all);
4. the rolling summary of the conversation's earlier messages;
5. the history, newest first, so the oldest messages are the first to go;
6. more knowledge, best first, with whatever room is left.

So as a conversation grows its oldest messages go first, then the summary,
then the client's instructions, and the knowledge within its share is never
cut for them. With ``share`` 1 the knowledge comes wholly before the history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

__all__ = ["Overflow", "Plan", "plan"]


class Overflow(Exception):
    """The parts that are never cut do not fit: ``room`` tokens were left for a ``message`` of that many."""

    def __init__(self, message: int, room: int) -> None:
        super().__init__(f"a message of {message} tokens does not fit in the {room} tokens left for it")
        self.message, self.room = message, room


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a request holds: ``knowledge`` passages (a prefix of the ranking; ``whole``: all of it,
    as whole sections), the summary, the instructions and the history from ``history_start``."""

    knowledge: int
    whole: bool
    summary: bool
    instructions: bool
    history_start: int
    tokens: int

    def history_kept(self, history: Sequence[int]) -> int:
        return len(history) - self.history_start


def plan(
    budget: int,
    *,
    fixed: int,
    message: int,
    knowledge: Sequence[int] = (),
    whole: int | None = None,
    header: int = 0,
    instructions: int = 0,
    summary: int = 0,
    history: Sequence[int] = (),
    share: float = 0.5,
) -> Plan:
    """The plan of one request.

    ``knowledge``: the token cost of each ranked passage as rendered; ``header``: the cost of the
    knowledge section's heading, paid once when any passage is kept; ``whole``: the cost of all the
    knowledge as whole sections (None: not offered). ``instructions``/``summary``: their cost, 0 when
    absent. ``history``: each message's cost, oldest first.
    """
    if not 0 <= share <= 1:
        raise ValueError("share must be from 0 to 1")
    room = budget - fixed - message
    if room < 0:
        raise Overflow(message, budget - fixed)
    left = room
    n_passages = len(knowledge)

    def take_passages(start: int, allowance: int) -> tuple[int, int]:
        """(passages kept from ``start``, tokens), a prefix of the ranking within ``allowance``."""
        spent, kept = 0, start
        if kept == 0 and kept < n_passages:
            if knowledge[0] + header > allowance:
                return 0, 0
            spent, kept = knowledge[0] + header, 1
        while kept < n_passages and spent + knowledge[kept] <= allowance:
            spent += knowledge[kept]
            kept += 1
        return kept, spent

    # 2. knowledge within its share
    share_room = int(room * share)
    is_whole = whole is not None and n_passages > 0 and whole <= share_room
    if is_whole:
        kept, used = n_passages, whole
    else:
        kept, used = take_passages(0, share_room)
    left -= used
    # 3. instructions, 4. summary
    with_instructions = 0 < instructions <= left
    left -= instructions if with_instructions else 0
    with_summary = 0 < summary <= left
    left -= summary if with_summary else 0
    # 5. history, newest first, contiguous
    start = len(history)
    while start > 0 and history[start - 1] <= left:
        start -= 1
        left -= history[start]
    # 6. more knowledge with what is left
    if not is_whole and kept < n_passages:
        if whole is not None and whole <= used + left:
            left += used - whole
            kept, used, is_whole = n_passages, whole, True
        else:
            more, spent = take_passages(kept, left)
            if more > kept:
                left -= spent
                used += spent
                kept = more
    total = budget - left
    return Plan(kept, is_whole, with_summary, with_instructions, start, total)
