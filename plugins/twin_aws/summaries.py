"""The S3 store's rolling summaries: ``<TWIN_S3_PREFIX>/<session_id>/summary.json``.

A mixin for ``S3ConversationStore`` that needs only its ``client``,
``bucket`` and ``prefix``, so it holds whatever layout the session's other
objects have. The summary lives under the session's own prefix, so erasing
the session (which deletes everything under that prefix) erases it too, and
so does the lifecycle rule that expires sessions. A summary is written only
while the session has objects, and removed again when the session turns out
to have been erased while it was written.
"""

from __future__ import annotations

import logging

from twin_aws.clients import error_code, join_key, translated
from twin_server import Summary, is_session_id
from twin_server.errors import ValidationError

__all__ = ["SUMMARY_NAME", "S3Summaries"]

log = logging.getLogger("twin_aws.storage")

SUMMARY_NAME = "summary.json"


def _check(session_id: str) -> None:
    if not is_session_id(session_id):
        raise ValidationError("invalid session id")


class S3Summaries:
    """``load_summary`` / ``save_summary`` for a store with ``client``, ``bucket`` and ``prefix``."""

    client: object
    bucket: str
    prefix: str

    def load_summary(self, session_id: str) -> Summary | None:
        _check(session_id)
        key = join_key(self.prefix, session_id, SUMMARY_NAME)
        with translated(f"S3 GetObject s3://{self.bucket}/{key}"):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except self.client.exceptions.ClientError as exc:
                if error_code(exc) in ("nosuchkey", "404"):
                    return None
                raise
        try:
            return Summary.from_json(body)
        except ValueError:
            log.warning("ignoring a corrupt summary of session %s", session_id)
            return None

    def save_summary(self, session_id: str, summary: Summary) -> None:
        _check(session_id)
        key = join_key(self.prefix, session_id, SUMMARY_NAME)
        if not self._session_exists(session_id):
            return
        with translated(f"S3 PutObject s3://{self.bucket}/{key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=summary.to_json(),
                                   ContentType="application/json")
        if not self._session_exists(session_id):  # erased while we wrote: leave nothing of it behind
            self._erase_summary(session_id)

    def _erase_summary(self, session_id: str) -> None:
        """Delete the summary object (``delete`` calls it after the session's other objects are gone): whichever
        of an erasure and a summary's writer comes second removes it, so it never outlives the erasure."""
        key = join_key(self.prefix, session_id, SUMMARY_NAME)
        with translated(f"S3 DeleteObject s3://{self.bucket}/{key}"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def _session_exists(self, session_id: str) -> bool:
        prefix = join_key(self.prefix, session_id, "")
        with translated(f"S3 ListObjectsV2 s3://{self.bucket}/{prefix}"):
            listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=2)
        return any(not obj["Key"].endswith("/" + SUMMARY_NAME) for obj in listed.get("Contents", ()))
