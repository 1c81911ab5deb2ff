"""The contract of a store that keeps rolling summaries (``load_summary`` / ``save_summary``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from twin_server import Message, Summary

__all__ = ["SummaryStoreContract"]

AT = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


class SummaryStoreContract:
    """Subclass as ``class TestMyStoreSummaries(SummaryStoreContract)`` with a ``store`` fixture, for a
    ConversationStore that also has ``load_summary`` and ``save_summary`` (a store without them needs
    none: the core keeps its summaries in memory)."""

    @pytest.fixture
    def store(self):
        raise NotImplementedError("a SummaryStoreContract subclass must define a `store` fixture")

    @pytest.fixture
    def session_id(self, store) -> str:
        session = f"contract-{uuid.uuid4().hex[:24]}"
        store.append(session, [Message("user", "hello", AT), Message("assistant", "hi", AT)])
        return session

    def test_a_session_without_a_summary_has_none(self, store, session_id):
        assert store.load_summary(session_id) is None

    def test_a_summary_round_trips_exactly_and_is_replaced(self, store, session_id):
        first = Summary("The visitor asked about boats. 🌍\nSecond line.", AT, 4, AT)
        store.save_summary(session_id, first)
        assert store.load_summary(session_id) == first
        second = Summary("Now about sonar.", AT, 6, AT)
        store.save_summary(session_id, second)
        assert store.load_summary(session_id) == second
        assert [m.content for m in store.load(session_id)] == ["hello", "hi"]  # the messages are untouched

    def test_summaries_belong_to_their_own_session(self, store, session_id):
        other = f"contract-{uuid.uuid4().hex[:24]}"
        store.append(other, [Message("user", "other", AT)])
        store.save_summary(session_id, Summary("mine", AT, 2, AT))
        assert store.load_summary(other) is None

    def test_no_summary_is_kept_for_a_session_that_does_not_exist(self, store):
        ghost = f"contract-{uuid.uuid4().hex[:24]}"
        store.save_summary(ghost, Summary("of nothing", AT, 2, AT))
        assert store.load_summary(ghost) is None

    def test_deleting_the_session_erases_its_summary(self, store, session_id):
        store.save_summary(session_id, Summary("to be erased", AT, 2, AT))
        store.delete(session_id)
        assert store.load_summary(session_id) is None
        store.append(session_id, [Message("user", "a new conversation", AT)])
        assert store.load_summary(session_id) is None  # nothing of the old one comes back
