"""Session ids, and the sortable unique names the stores give appended turns.

A turn's name is ``<stamp>-<token>``: ``stamp`` is a hybrid logical clock in
microseconds — the machine's clock, but always past the newest stamp the
writer has seen in the session — and ``token`` 32 random bits. So a turn
written after another was read sorts after it whatever the machines' clocks
say; turns written at once by machines that did not see each other sort by
clock; and two writers never pick the same name, so neither has to win a race
against the other.
"""

from __future__ import annotations

import random as _random
import re
from collections.abc import Callable

from twin_server import check_session_id

__all__ = ["TURN_NAME", "TurnNamer", "check_session_id", "stamp_of"]

STAMP_DIGITS = 16  # microseconds since 1970 fit in 16 digits until the year 2286
TURN_NAME = re.compile(r"(\d{16})-([0-9a-f]{8})")


class TurnNamer:
    """Makes turn names from an injectable clock (seconds) and random source."""

    def __init__(self, clock: Callable[[], float], random: _random.Random | None = None) -> None:
        self.clock, self.random = clock, random or _random.Random()

    def stamp(self, seen: int = 0) -> int:
        """Now in microseconds, but at least one past ``seen``, the newest stamp already in the session."""
        return max(int(self.clock() * 1_000_000), seen + 1)

    def token(self) -> str:
        return f"{self.random.getrandbits(32):08x}"

    def name(self, seen: int = 0) -> str:
        return f"{self.stamp(seen):0{STAMP_DIGITS}d}-{self.token()}"


def stamp_of(name: str) -> int:
    """The stamp of a turn name (0 for a name that is not one)."""
    match = TURN_NAME.match(name)
    return int(match.group(1)) if match else 0
