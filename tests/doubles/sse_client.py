"""A small Server-Sent Events parser for tests: bytes in, events out (comments kept)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from typing import Any


@dataclasses.dataclass
class Event:
    event: str | None = None  # None for a comment-only block
    data: str = ""
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def iter_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Events as their blank line arrives, however the bytes are split into chunks."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            yield parse_block(block.decode("utf-8"))


def parse_block(block: str) -> Event:
    event, data, comments = None, [], []
    for line in block.split("\n"):
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "":
            comments.append(value)
        elif field == "event":
            event = value
        elif field == "data":
            data.append(value)
    if data and event is None:
        event = "message"
    return Event(event, "\n".join(data), "\n".join(comments) if comments else None)


def parse(text: str) -> list[Event]:
    return list(iter_events([text.encode("utf-8")]))
