"""How a message becomes one DynamoDB item and back, within DynamoDB's size limits; the table itself."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from twin_aws.keys import stamp_of
from twin_server.errors import ValidationError
from twin_server import Message

log = logging.getLogger("twin_aws.dynamodb")

TTL_ATTRIBUTE = "expires_at"
MESSAGE_PREFIX = "m#"
#: DynamoDB's limits: items per transaction, bytes per transaction (4 MB, kept clear of), bytes per item.
TRANSACTION_ITEMS, TRANSACTION_BYTES, ITEM_BYTES = 100, 3_500_000, 400 * 1024
#: An item's bytes besides its content and session id: attribute names, sort key, role, timestamp, TTL.
ITEM_OVERHEAD = 160
MAX_APPEND = 99_999  # five digits of index in the sort key


def table_definition(table: str) -> dict[str, Any]:
    """The CreateTable request: the keys and on-demand billing (docs/aws.md has the same as CloudFormation)."""
    return {
        "TableName": table,
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "BillingMode": "PAY_PER_REQUEST",
    }


def check(session_id: str, messages: Sequence[Message]) -> None:
    """TypeError or ValidationError, before any request, for what the items cannot hold."""
    if len(messages) > MAX_APPEND:
        raise ValidationError(f"an append of more than {MAX_APPEND:,} messages")
    for message in messages:
        if not isinstance(message, Message):
            raise TypeError(f"expected Message, not {type(message).__name__}")
        message.to_json_line()  # ValidationError for content that is not Unicode
        if len(message.content.encode("utf-8")) + ITEM_OVERHEAD + len(session_id) > ITEM_BYTES:
            raise ValidationError(f"a message of {len(message.content)} characters does not fit one "
                                  f"DynamoDB item ({ITEM_BYTES // 1024} KB)")


def message_items(session_id: str, name: str, messages: Sequence[Message], expires_at: int | None) -> list[dict]:
    """One item per message, sort keys ``m#<name>#<index>``."""
    expires = {TTL_ATTRIBUTE: {"N": str(expires_at)}} if expires_at is not None else {}
    items = []
    for index, message in enumerate(messages):
        record = message.to_dict()
        item = {
            "pk": {"S": session_id}, "sk": {"S": f"{MESSAGE_PREFIX}{name}#{index:05d}"},
            "role": {"S": record["role"]}, "content": {"S": record["content"]},
            "timestamp": {"S": record["timestamp"]}, **expires,
        }
        if not message.complete:
            item["complete"] = {"BOOL": False}
        if message.sources:
            item["sources"] = {"S": json.dumps(record["sources"], ensure_ascii=False, separators=(",", ":"))}
        items.append(item)
    return items


def newest_stamp(item: Mapping[str, Any] | None) -> int:
    """The stamp in a message item's sort key; 0 for none."""
    return stamp_of(item["sk"]["S"][len(MESSAGE_PREFIX):]) if item else 0


def parse(item: Mapping[str, Any], session_id: str, now: float) -> Message | None:
    """The message of an item; None for one expired (DynamoDB removes it within days) or corrupt."""
    try:
        expires = item.get(TTL_ATTRIBUTE)
        if expires is not None and float(expires["N"]) <= now:
            return None
        return Message.from_dict({
            "role": item["role"]["S"], "content": item["content"]["S"], "timestamp": item["timestamp"]["S"],
            "complete": item.get("complete", {"BOOL": True})["BOOL"],
            **({"sources": json.loads(item["sources"]["S"])} if "sources" in item else {}),
        })
    except (KeyError, TypeError, ValueError) as exc:
        # Never log the item itself: it is somebody's conversation.
        log.warning("skipping a corrupt item in session %s (%s)", session_id, type(exc).__name__)
        return None


def transactions(items: list[dict]) -> Iterator[list[dict]]:
    """The items in transactions of at most 100 items and 3.5 MB."""
    batch: list[dict] = []
    size = 0
    for item in items:
        item_size = size_of(item)
        if batch and (len(batch) == TRANSACTION_ITEMS or size + item_size > TRANSACTION_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


def size_of(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size as DynamoDB counts it: attribute names plus values, in UTF-8 bytes."""
    total = 0
    for name, value in item.items():
        (kind, data), = value.items()
        total += len(name.encode()) + (1 if kind == "BOOL" else len(str(data).encode("utf-8")))
    return total
