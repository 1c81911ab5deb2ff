"""The S3 conversation store: shared, durable memory for twins on many machines.

Each session lives under ``<TWIN_S3_PREFIX>/<session_id>/``::

    head.jsonl                   a header line, then the newest folded messages (one JSON record a line)
    <generation>/<n>.jsonl       sealed chunk n: messages [n*C, (n+1)*C), never rewritten
    turns/<stamp>-<token>.jsonl  a turn that lost the race for the head, not folded into it yet

An append never has to win a race. It first tries to write the head it read
with the turn's load, ``IfMatch`` its ETag (``IfNoneMatch='*'`` for a new
session), folding in the turn objects that load found. If another machine
wrote the head meanwhile (412/409) the turn goes into an object of its own,
``IfNoneMatch='*'`` under a fresh name (``twin_aws.keys``: past every name the
writer saw, and unique), and is stored: a turn costs three requests
uncontended, four when it lost. Readers list the turn objects before reading
the head and put the unfolded ones after its messages, in name order; the next
writer whose head write wins folds them in (a head names what it folded until
the objects are gone, so a reader never counts a turn twice) and deletes them.

When the head reaches 2*C messages its oldest C are sealed into a chunk first.
Only messages already in the head are sealed, so a chunk's content is fixed by
the session's history and two machines sealing the same chunk write the same
bytes: chunks need no condition. A new session gets a fresh random generation,
so a writer that lost to a delete cannot leave its chunk where a later session
with the same id would read it (and it deletes what it wrote).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import random as _random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
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
from twin_aws.keys import TurnNamer, check_session_id, stamp_of
from twin_aws.s3_layout import HEAD_NAME, SUFFIX, TURNS, Head, View, encode, parse, split_lines, turn_name
from twin_aws.summaries import SUMMARY_NAME, S3Summaries
from twin_server import Message, Settings
from twin_server.errors import BackendUnavailable, ConfigurationError

__all__ = ["S3ConversationStore"]

log = logging.getLogger("twin_aws.storage")

DEFAULT_CHUNK = 50
#: Turn objects folded into the head by one write at most; a reader reads them all when there are no more.
FOLD_MAX = 32
#: Name collisions (a 32-bit token in the same microsecond) tolerated per turn object.
MAX_CONFLICTS = 10
_CONFLICT_CODES = {"preconditionfailed", "conditionalrequestconflict"}


class S3ConversationStore(S3Summaries):
    """A ConversationStore keeping each session in S3 under ``s3://bucket/prefix/<session_id>/``."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        chunk_messages: int = DEFAULT_CHUNK,
        *,
        max_conflicts: int = MAX_CONFLICTS,
        clock: Callable[[], float] = time.time,
        random: _random.Random | None = None,
    ) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.chunk_messages, self.max_conflicts = chunk_messages, max_conflicts
        self._namer = TurnNamer(clock, random)
        self._local = threading.local()  # per thread: the view of the last load, for the turn's append

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
        check_session_id(session_id)
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        if limit == 0:
            return []
        view = self._view(session_id, limit)
        self._local.view = (session_id, view)
        lines = view.pending_lines()
        if view.complete and view.head is not None:
            head = view.head
            wanted = head.sealed
            if limit is not None:
                wanted = min(head.sealed, math.ceil(max(0, limit - len(head.lines) - len(lines)) / head.chunk))
            older: list[bytes] = []
            for body in self._read_chunks(session_id, head, range(head.sealed - wanted, head.sealed)):
                older.extend(split_lines(body))
            lines = [*older, *head.lines, *lines]
        messages = [m for m in (parse(line, session_id) for line in lines) if m is not None]
        return messages[-limit:] if limit is not None else messages

    def append(self, session_id: str, messages: Sequence[Message]) -> None:
        """Append all of ``messages`` or none of them, whatever other machines write meanwhile."""
        check_session_id(session_id)
        lines = encode(messages)
        if not lines:
            return
        seen = getattr(self._local, "view", None)
        self._local.view = None
        view = seen[1] if seen is not None and seen[0] == session_id else self._view(session_id, 0)
        if view.ends_with(lines):
            return  # the core retrying an append whose first try was stored after all
        if view.complete and self._write_head(session_id, view, lines):
            return
        self._put_turn(session_id, lines, max((stamp_of(name) for name in view.listed), default=0))
        if not view.complete:
            self._fold(session_id, view)

    def delete(self, session_id: str) -> bool:
        """Erase the session (head first, so readers see it gone at once); True when it existed."""
        check_session_id(session_id)
        head_key = self._key(session_id, HEAD_NAME)
        with translated(f"S3 delete of s3://{self.bucket}/{self._key(session_id, '')}"):
            keys = self._list(self._key(session_id, ""))
            existed = head_key in keys or any(turn_name(key) for key in keys)
            if head_key in keys:
                self.client.delete_object(Bucket=self.bucket, Key=head_key)
        summary_key = self._key(session_id, SUMMARY_NAME)
        self._discard([k for k in keys if k not in (head_key, summary_key)], strict=True)
        self._erase_summary(session_id)  # last, whether listed or not: one saved meanwhile goes too
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

    def provision(self) -> list[str]:
        """Create the bucket unless it exists; what was done."""
        with translated(f"S3 provisioning of bucket {self.bucket!r}"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return []
            except self.client.exceptions.ClientError as exc:
                if http_status(exc) != 404:
                    raise
            region = self.client.meta.region_name
            location = {} if region in (None, "us-east-1") else {
                "CreateBucketConfiguration": {"LocationConstraint": region}}
            try:
                self.client.create_bucket(Bucket=self.bucket, **location)
            except self.client.exceptions.BucketAlreadyOwnedByYou:
                return []  # created meanwhile by another `init`
        return [f"created bucket {self.bucket}"]

    # -- reading -------------------------------------------------------------------

    def _view(self, session_id: str, limit: int | None) -> View:
        """The head and the unfolded turn objects: all of them, or the newest that ``limit`` needs."""
        with translated(f"S3 ListObjectsV2 s3://{self.bucket}/{self._key(session_id, TURNS, '')}"):
            listed = tuple(sorted(filter(None, map(turn_name, self._list(self._key(session_id, TURNS, ""))))))
        head = self._read_head(session_id)
        folded = set(head.folded) if head else set()
        pending = tuple(name for name in listed if name not in folded)
        view = View(head, listed, pending, {})
        if limit is None or len(pending) <= FOLD_MAX:
            self._read_turns(session_id, view, pending)
        else:  # a backlog left by a crowd: the window needs its newest turns only (two messages each, mostly)
            read = 0
            while read < len(pending) and len(view.pending_lines()) < limit:
                batch = pending[max(0, len(pending) - read - max(1, math.ceil(limit / 2))): len(pending) - read]
                self._read_turns(session_id, view, batch)
                read += len(batch)
        return view

    # -- S3 calls ----------------------------------------------------------------

    def _read_head(self, session_id: str) -> Head | None:
        key = self._key(session_id, HEAD_NAME)
        body, etag = self._get(key)
        return None if body is None else Head.decode(body, etag, f"s3://{self.bucket}/{key}")

    def _read_turns(self, session_id: str, view: View, names: Sequence[str]) -> None:
        keys = [self._key(session_id, TURNS, name + SUFFIX) for name in names]
        for name, body in zip(names, self._get_all(session_id, keys)):
            view.bodies[name] = split_lines(body)

    def _read_chunks(self, session_id: str, head: Head, indices: range) -> list[bytes]:
        return self._get_all(session_id, [self._key(session_id, head.generation, f"{i:08d}.jsonl") for i in indices])

    def _get_all(self, session_id: str, keys: list[str]) -> list[bytes]:
        if len(keys) <= 1:
            bodies = [self._get(key)[0] for key in keys]
        else:  # a whole long history, or a backlog of turns: fetch them side by side
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                bodies = [body for body, _ in pool.map(self._get, keys)]
        if any(body is None for body in bodies):
            # Folded and deleted, or the session deleted, while we read it; the core's retry reads it afresh.
            raise BackendUnavailable(f"S3 store: session {session_id} changed while it was being read")
        return bodies  # type: ignore[return-value]

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

    # -- writing -------------------------------------------------------------------

    def _write_head(
        self, session_id: str, view: View, lines: Sequence[bytes], fold: Sequence[str] | None = None
    ) -> bool:
        """Write the viewed head plus the turns ``fold`` (all pending) and ``lines``; False when it changed."""
        fold = view.pending if fold is None else fold
        base = view.head or Head(None, uuid.uuid4().hex, 0, self.chunk_messages, ())
        still_there = [name for name in base.folded if name in view.listed]  # until their objects are gone
        folded = [line for name in fold for line in view.bodies[name]]
        new, chunks = base.appended([*folded, *lines], folded=[*still_there, *fold])
        keys = [self._put(self._key(session_id, new.generation, f"{i:08d}.jsonl"), body) for i, body in chunks]
        if not self._put_head(session_id, base.etag, new):
            if keys:
                self._discard_orphans(session_id, new.generation, keys)
            return False
        if new.folded:
            self._discard([self._key(session_id, TURNS, name + SUFFIX) for name in new.folded])
        return True

    def _put_turn(self, session_id: str, lines: Sequence[bytes], seen: int) -> None:
        body = b"\n".join(lines) + b"\n"
        for _ in range(self.max_conflicts):
            name = self._namer.name(seen)
            if self._put(self._key(session_id, TURNS, name + SUFFIX), body, {"IfNoneMatch": "*"}):
                return
            seen = stamp_of(name)
        raise BackendUnavailable(f"S3 store: {self.max_conflicts} turn names of session {session_id} were taken")

    def _fold(self, session_id: str, view: View) -> None:
        """Fold the oldest turn objects of a backlog into the head (the rest stay after them, in order)."""
        oldest = view.pending[:FOLD_MAX]
        try:
            self._read_turns(session_id, view, [name for name in oldest if name not in view.bodies])
            self._write_head(session_id, view, [], fold=oldest)
        except BackendUnavailable:
            log.info("left %d turn objects of session %s for the next writer to fold", len(view.pending), session_id)

    def _put(self, key: str, body: bytes, condition: Mapping[str, str] | None = None) -> str | None:
        """PutObject; the key, or None when ``condition`` failed (another writer was first)."""
        with translated(f"S3 PutObject s3://{self.bucket}/{key}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson",
                                       **(condition or {}))
            except self.client.exceptions.ClientError as exc:
                if condition and _is_conflict(exc):
                    return None
                raise
        return key

    def _put_head(self, session_id: str, etag: str | None, head: Head) -> bool:
        """Write the head if nobody else has since ``etag`` was read; False on a conflict."""
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        return self._put(self._key(session_id, HEAD_NAME), head.encode(), condition) is not None

    def _discard_orphans(self, session_id: str, generation: str, keys: list[str]) -> None:
        """Delete chunks we sealed for a head that lost, if the session has since become another one."""
        head = self._read_head(session_id)
        if head is None or head.generation != generation:
            self._discard(keys)

    def _list(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", ())]

    def _discard(self, keys: list[str], strict: bool = False) -> None:
        """Delete objects no reader needs any more; a failure is only logged unless ``strict``."""
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
                log.warning("could not delete %d objects no longer needed; they are harmless", len(batch))

    def _key(self, session_id: str, *parts: str) -> str:
        return join_key(self.prefix, session_id, *parts)


def _is_conflict(exc: Any) -> bool:
    # NoSuchKey: the head we read was deleted before our IfMatch write, which is a conflict too.
    return error_code(exc) in _CONFLICT_CODES or http_status(exc) in (409, 412) or error_code(exc) == "nosuchkey"
