"""The S3 conversation store: shared, durable memory for twins on many machines.

Each session lives under ``<TWIN_S3_PREFIX>/<session_id>/``::

    head.jsonl                 a header line, then the newest messages (one JSON record a line)
    <generation>/<n>.jsonl     sealed chunk n: messages [n*C, (n+1)*C), never rewritten

The head is the only object a turn rewrites, and the only one written
conditionally: read with its ETag, write with ``IfMatch`` (``IfNoneMatch='*'``
for a new session). On 412/409 another machine won; re-read and re-apply
(bounded, with jitter), so no turn is ever lost. When the head reaches 2*C
messages its oldest C are sealed into a chunk first, so the head holds C to
2*C-1 messages (plus an append larger than C, until the next one) and a turn
costs the same at 10 messages or 100,000: a window of up to C messages is
read from the head alone.

Only messages already stored are sealed, so a chunk's content is fixed by the
session's history and two machines sealing the same chunk write the same
bytes: chunks need no condition. A new session gets a fresh random
generation, so a writer that lost to a delete cannot leave its chunk where a
later session with the same id would read it (and it deletes what it wrote).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import random as _random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from twin_aws.clients import (
    require_boto3,
    addressing_style,
    error_code,
    http_status,
    join_key,
    make_client,
    operation_timeout,
    translated,
)
from twin_server import is_session_id, Message, Settings
from twin_server.errors import BackendError, BackendUnavailable, ConfigurationError, ValidationError

__all__ = ["S3ConversationStore"]

log = logging.getLogger("twin_aws.storage")

FORMAT = "twin-server/s3-session"
HEAD_NAME = "head.jsonl"
DEFAULT_CHUNK = 50
#: Conditional-write conflicts tolerated per append before giving up to the core's retry.
MAX_CONFLICTS = 10
CONFLICT_BASE_DELAY, CONFLICT_MAX_DELAY = 0.01, 0.5
_CONFLICT_CODES = {"preconditionfailed", "conditionalrequestconflict"}
_BAD_RECORD = (ValueError, TypeError, KeyError, AttributeError)


@dataclass(frozen=True)
class Head:
    """A session's head object: where its sealed chunks are, and its unsealed messages."""

    etag: str | None  # None: the session does not exist yet
    generation: str
    sealed: int  # chunks 0 .. sealed-1 exist
    chunk: int  # messages per chunk, fixed for the session's life
    lines: tuple[bytes, ...]  # unsealed records, oldest first, without newlines

    def encode(self) -> bytes:
        meta = {"format": FORMAT, "generation": self.generation, "sealed": self.sealed, "chunk": self.chunk}
        return b"\n".join([_dumps(meta), *self.lines]) + b"\n"

    @classmethod
    def decode(cls, body: bytes, etag: str, where: str) -> "Head":
        first, _, rest = body.partition(b"\n")
        try:
            meta = json.loads(first)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError("not a session head")
            generation, sealed, chunk = meta["generation"], meta["sealed"], meta["chunk"]
            if not (isinstance(generation, str) and type(sealed) is int and type(chunk) is int):
                raise TypeError("bad header fields")
            if sealed < 0 or chunk < 1:
                raise ValueError("bad header values")
        except _BAD_RECORD as exc:
            raise BackendError(f"{where} is not a twin-server session object ({exc})") from None
        return cls(etag, generation, sealed, chunk, tuple(line for line in rest.split(b"\n") if line))

    def appended(self, lines: Sequence[bytes]) -> tuple["Head", list[tuple[int, bytes]]]:
        """This head with ``lines`` added, and the chunks (index, body) to seal before writing it.

        Only lines already stored are sealed: a chunk's bytes are then fixed by
        the history, whichever machine writes it and whether or not its head
        write wins.
        """
        unsealed, sealed, chunks = [*self.lines, *lines], self.sealed, []
        stored = len(self.lines)
        while len(unsealed) >= 2 * self.chunk and stored >= self.chunk:
            chunks.append((sealed, b"\n".join(unsealed[: self.chunk]) + b"\n"))
            unsealed, sealed, stored = unsealed[self.chunk :], sealed + 1, stored - self.chunk
        return replace(self, sealed=sealed, lines=tuple(unsealed)), chunks


class S3ConversationStore:
    """A ConversationStore keeping each session in S3 under ``s3://bucket/prefix/<session_id>/``."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        chunk_messages: int = DEFAULT_CHUNK,
        *,
        max_conflicts: int = MAX_CONFLICTS,
        sleep: Callable[[float], None] = time.sleep,
        random: _random.Random | None = None,
    ) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.chunk_messages, self.max_conflicts = chunk_messages, max_conflicts
        self._sleep, self._random = sleep, random or _random.Random()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "S3ConversationStore":
        settings = Settings(config)
        require_boto3("storage backend 's3'")
        bucket = settings.get_str("S3_BUCKET", "")
        if not bucket or not bucket.strip():
            raise ConfigurationError("storage backend 's3' needs TWIN_S3_BUCKET: the bucket that holds the sessions")
        chunk = settings.get_int("S3_CHUNK_MESSAGES", DEFAULT_CHUNK, minimum=1)
        client = make_client(
            "s3",
            operation_timeout(config, "storage"),
            what="storage backend 's3'",
            s3_addressing_style=addressing_style(config),
        )
        return cls(client, bucket.strip(), settings.get_str("S3_PREFIX", "sessions"), chunk)

    def __repr__(self) -> str:
        return f"S3ConversationStore('s3://{self.bucket}/{self.prefix}')"

    # -- the ConversationStore protocol --------------------------------------

    def load(self, session_id: str, limit: int | None = None) -> list[Message]:
        """The session's messages, oldest first; only the last ``limit`` when given."""
        self._check(session_id)
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        if limit == 0:
            return []
        head = self._read_head(session_id)
        if head is None:
            return []
        wanted = head.sealed
        if limit is not None:
            wanted = min(head.sealed, math.ceil(max(0, limit - len(head.lines)) / head.chunk))
        lines: list[bytes] = []
        for body in self._read_chunks(session_id, head, range(head.sealed - wanted, head.sealed)):
            lines.extend(line for line in body.split(b"\n") if line)
        lines.extend(head.lines)
        messages = [m for m in (_parse(line, session_id) for line in lines) if m is not None]
        return messages[-limit:] if limit is not None else messages

    def append(self, session_id: str, messages: Sequence[Message]) -> None:
        """Append all of ``messages`` or none of them, whatever other machines write meanwhile."""
        self._check(session_id)
        lines = _encode(messages)
        if not lines:
            return
        written: tuple[str, list[str]] | None = None  # (generation, chunk keys) of a lost attempt
        for attempt in range(self.max_conflicts):
            head = self._read_head(session_id)
            if written is not None and (head is None or head.generation != written[0]):
                self._discard(written[1])
            if head is None:
                head = Head(None, uuid.uuid4().hex, 0, self.chunk_messages, ())
            new, chunks = head.appended(lines)
            keys = [self._put_chunk(session_id, new.generation, index, body) for index, body in chunks]
            if self._put_head(session_id, head.etag, new):
                return
            written = (new.generation, keys)
            delay = self._random.uniform(0, min(CONFLICT_MAX_DELAY, CONFLICT_BASE_DELAY * 2**attempt))
            log.debug("session %s changed under attempt %d; re-applying in %.3fs", session_id, attempt + 1, delay)
            self._sleep(delay)
        raise BackendUnavailable(
            f"S3 store could not append to session {session_id}: {self.max_conflicts} conflicting writes in a row"
        )

    def delete(self, session_id: str) -> bool:
        """Erase the session (head first, so readers see it gone at once); True when it existed."""
        self._check(session_id)
        head_key = self._key(session_id, HEAD_NAME)
        with translated(f"S3 delete of s3://{self.bucket}/{self._key(session_id, '')}"):
            keys = self._list(self._key(session_id, ""))
            existed = head_key in keys
            if existed:
                self.client.delete_object(Bucket=self.bucket, Key=head_key)
        self._discard([k for k in keys if k != head_key], strict=True)
        return existed

    # -- the optional methods (see ConversationStore) -------------------------

    def event_store(self):
        """The owner's events, under ``<prefix>/owner.events/`` (see ``twin_aws.events``)."""
        from twin_aws.events import event_store

        return event_store(self.client, self.bucket, self.prefix)

    def sessions(self, limit: int, cursor: str | None = None):
        """The conversations, last written first (see ``twin_aws.events``)."""
        from twin_aws.events import list_sessions

        return list_sessions(self.client, self.bucket, self.prefix, limit, cursor)

    # -- S3 calls ----------------------------------------------------------------

    def _read_head(self, session_id: str) -> Head | None:
        key = self._key(session_id, HEAD_NAME)
        body, etag = self._get(key)
        return None if body is None else Head.decode(body, etag, f"s3://{self.bucket}/{key}")

    def _read_chunks(self, session_id: str, head: Head, indices: range) -> list[bytes]:
        keys = [self._key(session_id, head.generation, f"{i:08d}.jsonl") for i in indices]
        if len(keys) <= 1:
            bodies = [self._get(key)[0] for key in keys]
        else:  # a whole long history: fetch its chunks side by side
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                bodies = [body for body, _ in pool.map(self._get, keys)]
        if any(body is None for body in bodies):
            # Deleted (or recreated) while we read it; the core's retry reads it afresh.
            raise BackendUnavailable(f"S3 store: session {session_id} changed while it was being read")
        return bodies

    def _get(self, key: str) -> tuple[bytes | None, str]:
        """(body, etag), or (None, "") when there is no such object."""
        with translated(f"S3 GetObject s3://{self.bucket}/{key}"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.ClientError as exc:
                if error_code(exc) in ("nosuchkey", "404"):
                    return None, ""
                raise
            return response["Body"].read(), response["ETag"]

    def _put_chunk(self, session_id: str, generation: str, index: int, body: bytes) -> str:
        key = self._key(session_id, generation, f"{index:08d}.jsonl")
        with translated(f"S3 PutObject s3://{self.bucket}/{key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        return key

    def _put_head(self, session_id: str, etag: str | None, head: Head) -> bool:
        """Write the head if nobody else has since ``etag`` was read; False on a conflict."""
        key = self._key(session_id, HEAD_NAME)
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        with translated(f"S3 PutObject s3://{self.bucket}/{key}"):
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=head.encode(), ContentType="application/x-ndjson", **condition
                )
            except self.client.exceptions.ClientError as exc:
                if _is_conflict(exc):
                    return False
                raise
        return True

    def _list(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", ())]

    def _discard(self, keys: list[str], strict: bool = False) -> None:
        """Delete objects no head refers to; a failure is only logged unless ``strict``."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            try:
                with translated(f"S3 DeleteObjects in s3://{self.bucket}/{self.prefix}"):
                    response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                    if response.get("Errors"):
                        raise BackendUnavailable(f"S3 could not delete {len(response['Errors'])} objects")
            except BackendUnavailable:
                if strict:
                    raise
                log.warning("could not delete %d unreferenced chunks; they are harmless", len(batch))

    def _key(self, session_id: str, *parts: str) -> str:
        return join_key(self.prefix, session_id, *parts)

    @staticmethod
    def _check(session_id: str) -> None:
        if not is_session_id(session_id):
            raise ValidationError("invalid session id")


def _is_conflict(exc: Any) -> bool:
    # NoSuchKey: the head we read was deleted before our IfMatch write, which is a conflict too.
    return error_code(exc) in _CONFLICT_CODES or http_status(exc) in (409, 412) or error_code(exc) == "nosuchkey"


def _dumps(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _encode(messages: Sequence[Message]) -> list[bytes]:
    """One compact JSON record per message, before anything is read or written."""
    for message in messages:
        if not isinstance(message, Message):
            raise TypeError(f"expected Message, not {type(message).__name__}")
    return [message.to_json_line() for message in messages]


def _parse(line: bytes, session_id: str) -> Message | None:
    try:
        return Message.from_json_line(line)
    except ValueError as exc:
        # Never log the record itself: it is somebody's conversation.
        log.warning("skipping a corrupt record in session %s (%s)", session_id, type(exc.__cause__ or exc).__name__)
        return None
