"""The S3 and DynamoDB stores keep each session's rolling summary, through moto's server."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from tests.doubles.moto_server import aws, moto_server  # noqa: F401  (fixtures)
from twin_aws.dynamodb import DynamoDBConversationStore
from twin_aws.storage import S3ConversationStore
from twin_server.errors import ValidationError
from twin_server.testing import SummaryStoreContract
from twin_server.types import Message, Summary

AT = datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc)
SUMMARY = Summary("Jane asked about boats.", AT, 6, AT)


@pytest.fixture
def store(aws):
    bucket = aws.bucket()
    return S3ConversationStore.from_config({"S3_BUCKET": bucket, "S3_PREFIX": "sessions/"})


def test_a_summary_round_trips_beside_the_session(aws, store):
    store.append("sess-0001", [Message("user", "hi", AT)])
    assert store.load_summary("sess-0001") is None
    store.save_summary("sess-0001", SUMMARY)
    assert store.load_summary("sess-0001") == SUMMARY
    assert "sessions/sess-0001/summary.json" in aws.keys(store.bucket)
    assert store.load("sess-0001") == [Message("user", "hi", AT)]  # the messages are untouched


def test_no_summary_is_kept_for_a_session_that_does_not_exist(aws, store):
    store.save_summary("gone-0001", SUMMARY)
    assert aws.keys(store.bucket) == []


def test_deleting_a_session_erases_its_summary(aws, store):
    store.append("sess-0002", [Message("user", "hi", AT)])
    store.save_summary("sess-0002", SUMMARY)
    assert store.delete("sess-0002")
    assert aws.keys(store.bucket) == [] and store.load_summary("sess-0002") is None


def test_a_bad_session_id_is_refused(store):
    with pytest.raises(ValidationError):
        store.load_summary("../escape")


class TestS3Summaries(SummaryStoreContract):
    @pytest.fixture
    def store(self, aws):
        return S3ConversationStore.from_config({"S3_BUCKET": aws.bucket(), "S3_PREFIX": "sessions/"})


class TestDynamoDBSummaries(SummaryStoreContract):
    @pytest.fixture
    def store(self, aws):
        store = DynamoDBConversationStore.from_config({"DYNAMODB_TABLE": f"summaries-{uuid.uuid4().hex[:12]}"})
        store.provision()
        return store


def test_dynamodb_summaries_expire_with_the_session(aws):
    clock = [1_000_000.0]
    made = DynamoDBConversationStore.from_config({"DYNAMODB_TABLE": f"ttl-{uuid.uuid4().hex[:12]}",
                                                  "SESSION_TTL": 60})
    made.provision()
    store = DynamoDBConversationStore(made.client, made.table, ttl=60, clock=lambda: clock[0])
    store.append("sess-ttl-1", [Message("user", "hi", AT)])
    store.save_summary("sess-ttl-1", SUMMARY)
    assert store.load_summary("sess-ttl-1") == SUMMARY
    clock[0] += 61
    assert store.load_summary("sess-ttl-1") is None and store.load("sess-ttl-1") == []


def test_a_reply_keeps_its_sources_in_every_aws_store(aws, store):
    from twin_server.types import Source

    reply = Message("assistant", "In Lisbon.", AT, sources=(Source("facts.json#location", "Location"),))
    dynamo = DynamoDBConversationStore.from_config({"DYNAMODB_TABLE": f"sources-{uuid.uuid4().hex[:12]}"})
    dynamo.provision()
    for each in (store, dynamo):
        each.append("sess-src-1", [Message("user", "Where?", AT), reply])
        assert each.load("sess-src-1")[-1] == reply


@pytest.mark.parametrize("kind", ["s3", "dynamodb"])
def test_a_summary_saved_by_another_machine_while_the_session_is_erased_goes_with_it(aws, kind):
    """The worst moment: the erasing store has listed the session (no summary yet) and not yet deleted a message."""
    if kind == "s3":
        config = {"S3_BUCKET": aws.bucket(), "S3_PREFIX": "sessions/"}
        eraser, writer = S3ConversationStore.from_config(config), S3ConversationStore.from_config(config)
        first_delete = "before-send.s3.DeleteObject"
    else:
        config = {"DYNAMODB_TABLE": f"race-{uuid.uuid4().hex[:12]}"}
        eraser, writer = DynamoDBConversationStore.from_config(config), DynamoDBConversationStore.from_config(config)
        eraser.provision()
        first_delete = "before-send.dynamodb.BatchWriteItem"
    eraser.append("sess-race-1", [Message("user", "hi", AT), Message("assistant", "Hello.", AT)])
    saved = []

    def meanwhile(**kwargs):
        if not saved:
            saved.append(True)
            writer.save_summary("sess-race-1", SUMMARY)  # the session still has its messages: it is written
        return None  # the erasing request goes on as sent

    eraser.client.meta.events.register(first_delete, meanwhile)
    assert eraser.delete("sess-race-1")
    assert saved == [True]
    assert writer.load_summary("sess-race-1") is None and eraser.load("sess-race-1") == []
    if kind == "s3":
        assert aws.keys(config["S3_BUCKET"]) == []
    else:
        assert aws.dynamodb.scan(TableName=config["DYNAMODB_TABLE"])["Items"] == []
