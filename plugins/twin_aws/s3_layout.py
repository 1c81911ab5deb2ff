"""The objects of one S3 session: the head's format, chunks, turn objects and their names."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from twin_aws.keys import TURN_NAME
from twin_server.errors import BackendError
from twin_server import Message

log = logging.getLogger("twin_aws.storage")

FORMAT = "twin-server/s3-session"
HEAD_NAME = "head.jsonl"
TURNS = "turns"
SUFFIX = ".jsonl"
_BAD_RECORD = (ValueError, TypeError, KeyError, AttributeError)


@dataclass(frozen=True)
class Head:
    """A session's head object: where its sealed chunks are, its unsealed messages, what it folded."""

    etag: str | None  # None: the session does not exist yet
    generation: str
    sealed: int  # chunks 0 .. sealed-1 exist
    chunk: int  # messages per chunk, fixed for the session's life
    lines: tuple[bytes, ...]  # unsealed records, oldest first, without newlines
    folded: tuple[str, ...] = ()  # turn objects whose messages are in ``lines`` but which may still exist

    def encode(self) -> bytes:
        meta: dict[str, Any] = {"format": FORMAT, "generation": self.generation, "sealed": self.sealed,
                                "chunk": self.chunk}
        if self.folded:
            meta["folded"] = list(self.folded)
        return b"\n".join([dumps(meta), *self.lines]) + b"\n"

    @classmethod
    def decode(cls, body: bytes, etag: str, where: str) -> "Head":
        first, _, rest = body.partition(b"\n")
        try:
            meta = json.loads(first)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError("not a session head")
            generation, sealed, chunk = meta["generation"], meta["sealed"], meta["chunk"]
            folded = meta.get("folded", [])
            if not (isinstance(generation, str) and type(sealed) is int and type(chunk) is int):
                raise TypeError("bad header fields")
            if not (isinstance(folded, list) and all(isinstance(name, str) for name in folded)):
                raise TypeError("bad folded list")
            if sealed < 0 or chunk < 1:
                raise ValueError("bad header values")
        except _BAD_RECORD as exc:
            raise BackendError(f"{where} is not a twin-server session object ({exc})") from None
        lines = tuple(line for line in rest.split(b"\n") if line)
        return cls(etag, generation, sealed, chunk, lines, tuple(folded))

    def appended(self, lines: Sequence[bytes], folded: Sequence[str] = ()) -> tuple["Head", list[tuple[int, bytes]]]:
        """This head with ``lines`` added, and the chunks (index, body) to seal before writing it.

        Only lines already in this head are sealed: a chunk's bytes are then
        fixed by the history, whichever machine writes it and whether or not
        its head write wins.
        """
        unsealed, sealed, chunks = [*self.lines, *lines], self.sealed, []
        stored = len(self.lines)
        while len(unsealed) >= 2 * self.chunk and stored >= self.chunk:
            chunks.append((sealed, b"\n".join(unsealed[: self.chunk]) + b"\n"))
            unsealed, sealed, stored = unsealed[self.chunk :], sealed + 1, stored - self.chunk
        return replace(self, sealed=sealed, lines=tuple(unsealed), folded=tuple(folded)), chunks


@dataclass
class View:
    """What a reader saw of a session: the head, then the turn objects not folded into it.

    The listing is taken *before* the head is read: a turn object a folder
    deleted after the listing is then either in the head's ``folded`` list or
    missing when fetched (and the read starts again), never silently skipped.
    """

    head: Head | None
    listed: tuple[str, ...]  # every turn object present, in name order
    pending: tuple[str, ...]  # the listed ones not folded into the head, in name order
    bodies: dict[str, list[bytes]]  # the records of the pending turns read (all, or the newest ones)

    @property
    def complete(self) -> bool:
        return len(self.bodies) == len(self.pending)

    def pending_lines(self) -> list[bytes]:
        """The records of the pending turns read, oldest first (a suffix of them all when not complete)."""
        return [line for name in self.pending if name in self.bodies for line in self.bodies[name]]

    def ends_with(self, lines: Sequence[bytes]) -> bool:
        """True when ``lines`` are already the last records stored: a retried append that was applied."""
        tail = self.pending_lines() or (list(self.head.lines) if self.head else [])
        return len(tail) >= len(lines) and tail[len(tail) - len(lines):] == list(lines)


def turn_name(key: str) -> str | None:
    """The turn name in a ``.../turns/<name>.jsonl`` key, or None for any other object."""
    leaf = key.rsplit("/", 1)[-1]
    name = leaf[: -len(SUFFIX)] if leaf.endswith(SUFFIX) else ""
    return name if TURN_NAME.fullmatch(name) else None


def split_lines(body: bytes) -> list[bytes]:
    return [line for line in body.split(b"\n") if line]


def dumps(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode(messages: Sequence[Message]) -> list[bytes]:
    """One compact JSON record per message, before anything is read or written."""
    for message in messages:
        if not isinstance(message, Message):
            raise TypeError(f"expected Message, not {type(message).__name__}")
    return [message.to_json_line() for message in messages]


def parse(line: bytes, session_id: str) -> Message | None:
    try:
        return Message.from_json_line(line)
    except ValueError as exc:
        # Never log the record itself: it is somebody's conversation.
        log.warning("skipping a corrupt record in session %s (%s)", session_id, type(exc.__cause__ or exc).__name__)
        return None
