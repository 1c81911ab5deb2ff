"""The S3 store keeps each session's rolling summary under its prefix, through moto's S3 server."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.doubles.moto_server import aws, moto_server  # noqa: F401  (fixtures)
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
