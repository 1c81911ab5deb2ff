"""The DynamoDB store's rolling summaries: the item ``(<session_id>, "summary")`` beside its messages.

A mixin for ``DynamoDBConversationStore`` (its ``client``, ``table``, ``ttl``,
``_clock``, ``_query`` and ``_translated``). The item carries the summary's
JSON and, with ``TWIN_SESSION_TTL``, the same ``expires_at`` as a message, so
the table's TTL removes it with the session; ``delete`` erases every item of
the session and this one last (``_erase_summary``). A summary is written only
while the session has a message, and removed again when the session turns out
to have been erased while it was written: whichever of the two writers comes
second removes it, so a summary saved during an erasure never outlives it.
"""

from __future__ import annotations

import logging

from twin_aws.dynamodb_items import TTL_ATTRIBUTE
from twin_aws.keys import check_session_id
from twin_server import Summary

__all__ = ["SUMMARY_KEY", "DynamoDBSummaries"]

log = logging.getLogger("twin_aws.dynamodb")

SUMMARY_KEY = "summary"


class DynamoDBSummaries:
    def load_summary(self, session_id: str) -> Summary | None:
        check_session_id(session_id)
        with self._translated(f"DynamoDB GetItem of the summary of session {session_id}"):
            item = self.client.get_item(TableName=self.table, Key=self._summary_key(session_id),
                                        ConsistentRead=True).get("Item")
        if item is None:
            return None
        expires = item.get(TTL_ATTRIBUTE)
        if expires is not None and float(expires["N"]) <= self._clock():
            return None
        try:
            return Summary.from_json(item["body"]["S"])
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a corrupt summary of session %s", session_id)
            return None

    def save_summary(self, session_id: str, summary: Summary) -> None:
        check_session_id(session_id)
        if not self._has_messages(session_id):
            return
        item = {**self._summary_key(session_id), "body": {"S": summary.to_json().decode("utf-8")}}
        if self.ttl:
            item[TTL_ATTRIBUTE] = {"N": str(int(self._clock()) + self.ttl)}
        with self._translated(f"DynamoDB PutItem of the summary of session {session_id}"):
            self.client.put_item(TableName=self.table, Item=item)
        if not self._has_messages(session_id):  # erased while we wrote: leave nothing of it behind
            self._erase_summary(session_id)

    def _erase_summary(self, session_id: str) -> None:
        """Delete the summary item (``delete`` calls it after the messages are gone)."""
        with self._translated(f"DynamoDB DeleteItem of the summary of session {session_id}"):
            self.client.delete_item(TableName=self.table, Key=self._summary_key(session_id))

    def _has_messages(self, session_id: str) -> bool:
        with self._translated(f"DynamoDB Query of session {session_id}"):
            return next(self._query(session_id, forward=False, limit=1, keys_only=True), None) is not None

    @staticmethod
    def _summary_key(session_id: str) -> dict:
        return {"pk": {"S": session_id}, "sk": {"S": SUMMARY_KEY}}
