"""The summary store contract fails stores that lose, leak or resurrect a summary."""

from __future__ import annotations

import pytest

from tests.doubles.contract_runner import pytester, run_contract  # noqa: F401  (fixture)
from tests.doubles.scripted import MemoryStore
from twin_server.backends.retrying import MemorySummaries

pytest_plugins = ["pytester"]


class GoodStore(MemoryStore):
    def __init__(self):
        super().__init__()
        self.summaries = MemorySummaries()

    def load_summary(self, session_id):
        return self.summaries.load_summary(session_id)

    def save_summary(self, session_id, summary):
        if session_id in self.sessions:
            self.summaries.save_summary(session_id, summary)

    def delete(self, session_id):
        self.summaries.delete(session_id)
        return super().delete(session_id)


class KeepsOnDelete(GoodStore):
    def delete(self, session_id):
        return MemoryStore.delete(self, session_id)


class SavesForGhosts(GoodStore):
    def save_summary(self, session_id, summary):
        self.summaries.save_summary(session_id, summary)


class OneForAll(GoodStore):
    def load_summary(self, session_id):
        return next(iter(self.summaries._items.values()), None)


MUTANTS = {
    "GoodStore": set(),
    "KeepsOnDelete": {"test_deleting_the_session_erases_its_summary"},
    "SavesForGhosts": {"test_no_summary_is_kept_for_a_session_that_does_not_exist"},
    "OneForAll": {"test_summaries_belong_to_their_own_session"},
}


@pytest.mark.parametrize("store", sorted(MUTANTS))
def test_the_contract_catches_each_broken_store(pytester, store):
    passed, failed = run_contract(pytester, __name__, "SummaryStoreContract", f"""
        @pytest.fixture
        def store(self):
            return here.{store}()
        """)
    assert failed == MUTANTS[store]
    assert len(passed) + len(failed) == 5
