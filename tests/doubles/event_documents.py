"""The documents an event store test runs over: files, S3 (moto's server) or DynamoDB (moto's server)."""

from __future__ import annotations

import uuid
from typing import Any

from twin_aws.dynamodb import DynamoDBConversationStore
from twin_aws.events import S3Documents
from twin_server import FileDocuments

KINDS = ("files", "s3", "dynamodb")


def documents_of(kind: str, request: Any, tmp_path: Any) -> Any:
    """New, empty documents of ``kind``; S3's and DynamoDB's through the ``aws`` fixture (moto's server)."""
    if kind == "files":
        return FileDocuments(tmp_path / "events")
    s3 = request.getfixturevalue("aws")
    if kind == "dynamodb":
        store = DynamoDBConversationStore.from_config({"DYNAMODB_TABLE": f"events-{uuid.uuid4().hex[:10]}"})
        store.provision()
        return store.event_store().documents
    return S3Documents(s3.s3, s3.bucket("twin-events"), "sessions/owner.events")
