"""The DynamoDB store's owner events: ``twin_server.DocumentEventStore`` over items of one reserved partition.

Every document is an item ``pk = "#owner-events"`` (no session id can hold a
``#``), ``sk = "doc#<key>"``, with its JSON ``body`` and a random ``version``.
Conditional writes are DynamoDB's own: ``attribute_not_exists(sk)`` to create,
``version = :seen`` to update, so machines sharing the table never lose each
other's events. A mixin for ``DynamoDBConversationStore`` (its ``client``,
``table`` and ``_translated``).
"""

from __future__ import annotations

import uuid
from typing import Any

from twin_server import DocumentEventStore

__all__ = ["EVENTS_PARTITION", "DynamoDBDocuments", "DynamoDBEvents"]

EVENTS_PARTITION = "#owner-events"
DOCUMENT_PREFIX = "doc#"


class DynamoDBDocuments:
    """``twin_server.Documents`` as items of the owner-events partition."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"DynamoDBDocuments(table {self.store.table!r}, partition {EVENTS_PARTITION!r})"

    def _key(self, key: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": EVENTS_PARTITION}, "sk": {"S": DOCUMENT_PREFIX + key}}

    def read(self, key: str) -> tuple[bytes, str] | None:
        with self.store._translated(f"DynamoDB GetItem of owner document {key}"):
            item = self.store.client.get_item(TableName=self.store.table, Key=self._key(key),
                                              ConsistentRead=True).get("Item")
        if item is None:
            return None
        return item["body"]["B"], item["version"]["S"]

    def write(self, key: str, body: bytes, *, version: str | None) -> bool:
        item = {**self._key(key), "body": {"B": body}, "version": {"S": uuid.uuid4().hex}}
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(sk)"}
        if version is not None:
            condition = {"ConditionExpression": "version = :seen",
                         "ExpressionAttributeValues": {":seen": {"S": version}}}
        client = self.store.client
        with self.store._translated(f"DynamoDB PutItem of owner document {key}"):
            try:
                client.put_item(TableName=self.store.table, Item=item, **condition)
            except client.exceptions.ConditionalCheckFailedException:
                return False
        return True

    def remove(self, key: str) -> bool:
        with self.store._translated(f"DynamoDB DeleteItem of owner document {key}"):
            old = self.store.client.delete_item(TableName=self.store.table, Key=self._key(key), ReturnValues="ALL_OLD")
        return bool(old.get("Attributes"))

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        query: dict[str, Any] = {
            "TableName": self.store.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": EVENTS_PARTITION}, ":prefix": {"S": DOCUMENT_PREFIX + prefix}},
            "ProjectionExpression": "sk",
            "ConsistentRead": True,
        }
        with self.store._translated(f"DynamoDB Query of owner documents {prefix}"):
            while True:
                page = self.store.client.query(**query)
                found += [item["sk"]["S"][len(DOCUMENT_PREFIX):] for item in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    return found
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class DynamoDBEvents:
    def event_store(self) -> DocumentEventStore:
        """The owner's events, in the table's ``#owner-events`` partition."""
        return DocumentEventStore(DynamoDBDocuments(self), where=f"DynamoDB table {self.table!r}")
