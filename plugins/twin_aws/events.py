"""The S3 store's extras for the owner: its events as S3 objects, and its conversations, last written first.

Events live beside the sessions, under ``<TWIN_S3_PREFIX>/owner.events/``
(a name no session id can have), in ``twin_server.DocumentEventStore``'s
layout. Conditional writes are S3's own: ``IfNoneMatch: *`` to create,
``IfMatch: <ETag>`` to update, so machines sharing the bucket never lose each
other's events.

The conversations are listed from one ``ListObjectsV2`` walk of the prefix: a
session's last activity is the newest ``LastModified`` of its objects,
whatever the layout of a session's objects is.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from twin_aws.clients import error_code, http_status, join_key, translated
from twin_server import DocumentEventStore, is_session_id, listing_cursor, read_listing_cursor, SessionActivity

__all__ = ["EVENTS_NAME", "S3Documents", "event_store", "list_sessions"]

EVENTS_NAME = "owner.events"
_CONFLICTS = {"preconditionfailed", "conditionalrequestconflict", "nosuchkey"}


class S3Documents:
    """``twin_server.Documents`` as objects under ``s3://bucket/root/``."""

    def __init__(self, client: Any, bucket: str, root: str) -> None:
        self.client, self.bucket, self.root = client, bucket, root.rstrip("/")

    def __repr__(self) -> str:
        return f"S3Documents('s3://{self.bucket}/{self.root}/')"

    def _key(self, key: str) -> str:
        return join_key(self.root, key)

    def read(self, key: str) -> tuple[bytes, str] | None:
        full = self._key(key)
        with translated(f"S3 GetObject s3://{self.bucket}/{full}"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
            except self.client.exceptions.ClientError as exc:
                if error_code(exc) in ("nosuchkey", "404"):
                    return None
                raise
            return response["Body"].read(), response["ETag"]

    def write(self, key: str, body: bytes, *, version: str | None) -> bool:
        full = self._key(key)
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        with translated(f"S3 PutObject s3://{self.bucket}/{full}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=full, Body=body, ContentType="application/json",
                                       **condition)
            except self.client.exceptions.ClientError as exc:
                if error_code(exc) in _CONFLICTS or http_status(exc) in (409, 412):
                    return False
                raise
        return True

    def remove(self, key: str) -> bool:
        full = self._key(key)
        with translated(f"S3 DeleteObject s3://{self.bucket}/{full}"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=full)
            except self.client.exceptions.ClientError as exc:
                if error_code(exc) in ("nosuchkey", "404", "notfound"):
                    return False
                raise
            self.client.delete_object(Bucket=self.bucket, Key=full)
        return True

    def keys(self, prefix: str) -> list[str]:
        start = self._key(prefix)
        with translated(f"S3 ListObjectsV2 s3://{self.bucket}/{start}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start)
            found = [obj["Key"] for page in pages for obj in page.get("Contents", ())]
        return sorted(key[len(self.root) + 1:] if self.root else key for key in found)


def event_store(client: Any, bucket: str, prefix: str) -> DocumentEventStore:
    documents = S3Documents(client, bucket, join_key(prefix, EVENTS_NAME))
    return DocumentEventStore(documents, where=repr(documents))


def list_sessions(client: Any, bucket: str, prefix: str, limit: int,
                  cursor: str | None = None) -> tuple[list[SessionActivity], str | None]:
    after = read_listing_cursor(cursor) if cursor else None
    start = join_key(prefix, "")
    latest: dict[str, datetime] = {}
    with translated(f"S3 ListObjectsV2 s3://{bucket}/{start}"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
            for obj in page.get("Contents", ()):
                session_id = obj["Key"][len(start):].split("/", 1)[0]
                if is_session_id(session_id):
                    moment = obj["LastModified"]
                    if session_id not in latest or moment > latest[session_id]:
                        latest[session_id] = moment
    entries = sorted(((_micros(moment), session_id) for session_id, moment in latest.items()), reverse=True)
    if after is not None:
        entries = [entry for entry in entries if entry < after]
    page = entries[:limit]
    listed = [SessionActivity(s, datetime.fromtimestamp(us / 1e6, timezone.utc)) for us, s in page]
    return listed, listing_cursor(*page[-1]) if len(entries) > limit else None


def _micros(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)
