"""The contract every conversation store must keep, as a pytest class to subclass."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from twin_server import Message
from twin_server.errors import TransientError

__all__ = ["ConversationStoreContract", "turn_problems"]

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)

#: Contents that trip stores keeping one record per line, JSON-escaping or guessing encodings.
AWKWARD_CONTENTS = (
    "héllo 🌍\nsecond line\r\nthird",
    "line\u2028separator\u2029paragraph\u0085next line",
    'tab\tquote " backslash \\ braces {"role": "assistant"}',
    "   leading and trailing spaces   ",
)


def _turn(worker: int, index: int) -> list[Message]:
    return [Message("user", f"w{worker}-t{index}-q"), Message("assistant", f"w{worker}-t{index}-a")]


def turn_problems(messages: Sequence[Message], workers: int, turns: int) -> list[str]:
    """Every way ``messages`` differs from ``workers`` x ``turns`` whole turns, each worker's in order."""
    problems = []
    if len(messages) != 2 * workers * turns:
        problems.append(f"{len(messages)} messages stored, expected {2 * workers * turns}")
    seen: set[tuple[int, int]] = set()
    last: dict[int, int] = {}
    for i in range(0, len(messages) - 1, 2):
        question, answer = messages[i].content, messages[i + 1].content
        if not (question.endswith("-q") and answer == question[:-2] + "-a"):
            problems.append(f"a turn is split at message {i}: {question!r} then {answer!r}")
            break
        worker, index = (int(part[1:]) for part in question[:-2].split("-"))
        if (worker, index) in seen:
            problems.append(f"turn {question[:-2]} is stored twice")
        if index <= last.get(worker, -1):
            problems.append(f"turn {question[:-2]} is out of its writer's order")
        seen.add((worker, index))
        last[worker] = index
    missing = sorted({(w, t) for w in range(workers) for t in range(turns)} - seen)
    if missing:
        problems.append(f"{len(missing)} turns lost, e.g. " + ", ".join(f"w{w}-t{t}" for w, t in missing[:5]))
    return problems


def _run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(0..count-1)`` in threads started together; the exceptions they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            work(n)
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,), name=f"contract-{n}") for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


class ConversationStoreContract:
    """Subclass as ``class TestMyStore(ConversationStoreContract)`` and give it a ``store`` fixture.

    Overridable:

    - ``make_session_id`` fixture: a callable returning a fresh session id your store accepts
      (default ``contract-`` + 24 hex digits, which the core's session-id rule accepts);
    - ``concurrency = (threads, turns_per_thread)``: scale down for a slow store (default 8 x 25);
    - ``timestamp_precision``: how close a loaded timestamp must be to the stored one
      (default one microsecond, i.e. exact);
    - ``transient_attempts``: how many times a concurrent append (or a load racing appends) that
      raised a ``TransientError`` is made, as the core's retry would (default 3). A transient error
      must mean nothing was written: a turn stored twice fails the check.
    """

    concurrency: tuple[int, int] = (8, 25)
    timestamp_precision: timedelta = timedelta(microseconds=1)
    transient_attempts: int = 3

    @pytest.fixture
    def store(self):
        raise NotImplementedError("a ConversationStoreContract subclass must define a `store` fixture")

    @pytest.fixture
    def make_session_id(self) -> Callable[[], str]:
        return lambda: f"contract-{uuid.uuid4().hex[:24]}"

    @pytest.fixture
    def session_id(self, make_session_id) -> str:
        return make_session_id()

    @pytest.fixture
    def history(self, store, session_id) -> list[Message]:
        """Five turns (ten messages) appended one turn at a time, oldest first."""
        messages = []
        for i in range(5):
            at = T0 + timedelta(seconds=i)
            turn = [Message("user", f"question {i}", at), Message("assistant", f"answer {i}", at)]
            store.append(session_id, turn)
            messages += turn
        return messages

    def _append(self, store, session_id: str, messages: list[Message]) -> None:
        self._again_when_transient(lambda: store.append(session_id, messages))

    def _load(self, store, session_id: str) -> list[Message]:
        """A read that raced writers may ask, with a ``TransientError``, to be made afresh (S3's turn
        objects can be folded away mid-read); the core's retry would, so the kit does."""
        return self._again_when_transient(lambda: store.load(session_id))

    def _again_when_transient(self, call: Callable[[], Any]) -> Any:
        for attempt in range(1, self.transient_attempts):
            try:
                return call()
            except TransientError:
                time.sleep(0.002 * attempt)
        return call()  # the last attempt: its TransientError is the store's answer

    # -- reading -------------------------------------------------------------------

    def test_an_unknown_session_loads_as_empty(self, store, session_id):
        assert list(store.load(session_id)) == []
        assert list(store.load(session_id, 5)) == []
        assert list(store.load(session_id, 0)) == []

    def test_messages_load_oldest_first(self, store, session_id, history):
        assert [m.content for m in store.load(session_id)] == [m.content for m in history]

    @pytest.mark.parametrize("limit", [0, 1, 3, 10, 11, 1000, None], ids=lambda v: f"limit={v}")
    def test_limit_keeps_the_newest_messages_oldest_first(self, store, session_id, history, limit):
        expected = history if limit is None else (history[-limit:] if limit else [])
        assert [m.content for m in store.load(session_id, limit)] == [m.content for m in expected]
        assert [m.content for m in store.load(session_id, limit=limit)] == [m.content for m in expected]

    def test_messages_round_trip_every_field(self, store, session_id):
        lisbon = timezone(timedelta(hours=1))
        sent = [
            Message("user" if i % 2 == 0 else "assistant", text, T0.astimezone(lisbon) + timedelta(microseconds=i))
            for i, text in enumerate(AWKWARD_CONTENTS)
        ]
        sent.append(Message("assistant", "a reply cut sh", T0 + timedelta(seconds=1), complete=False))
        store.append(session_id, sent)
        loaded = list(store.load(session_id))
        assert len(loaded) == len(sent)
        for got, want in zip(loaded, sent):
            assert isinstance(got, Message)
            assert (got.role, got.content, got.complete) == (want.role, want.content, want.complete)
            assert got.timestamp.tzinfo is not None
            assert abs(got.timestamp - want.timestamp) < self.timestamp_precision, (got.timestamp, want.timestamp)

    def test_appending_no_messages_stores_nothing(self, store, session_id):
        store.append(session_id, [])
        assert list(store.load(session_id)) == []

    # -- deleting -------------------------------------------------------------------

    def test_delete_returns_true_then_false(self, store, session_id, history):
        assert store.delete(session_id) is True
        assert list(store.load(session_id)) == []
        assert store.delete(session_id) is False

    def test_deleting_an_unknown_session_returns_false(self, store, session_id):
        assert store.delete(session_id) is False

    def test_a_deleted_session_starts_afresh(self, store, session_id, history):
        store.delete(session_id)
        store.append(session_id, [Message("user", "hello again")])
        assert [m.content for m in store.load(session_id)] == ["hello again"]

    def test_sessions_are_independent(self, store, make_session_id):
        first, second = make_session_id(), make_session_id()
        store.append(first, [Message("user", "first q"), Message("assistant", "first a")])
        store.append(second, [Message("user", "second q")])
        store.append(first, [Message("user", "first q2")])
        assert [m.content for m in store.load(first)] == ["first q", "first a", "first q2"]
        assert [m.content for m in store.load(second, 5)] == ["second q"]
        assert store.delete(first) is True
        assert [m.content for m in store.load(second)] == ["second q"]

    # -- whole turns, under concurrency ------------------------------------------

    def test_a_turn_is_appended_whole(self, store, session_id, history):
        store.append(session_id, [Message("user", "new q"), Message("assistant", "new a")])
        assert [m.content for m in store.load(session_id, 2)] == ["new q", "new a"]
        assert len(store.load(session_id)) == len(history) + 2

    def test_concurrent_appends_lose_nothing_and_never_split_a_turn(self, store, session_id):
        threads, turns = self.concurrency

        def work(worker: int) -> None:
            for index in range(turns):
                self._append(store, session_id, _turn(worker, index))

        assert _run_threads(threads, work) == []
        assert turn_problems(list(store.load(session_id)), threads, turns) == []

    def test_a_load_never_sees_half_a_turn(self, store, session_id):
        threads, turns = self.concurrency
        writers = max(1, threads // 2)
        writing = [writers]  # writers still running; readers stop when it reaches 0
        lock = threading.Lock()
        torn: list[int] = []

        def work(n: int) -> None:
            if n >= writers:
                while writing[0]:
                    loaded = list(self._load(store, session_id))
                    pairs = zip(loaded[::2], loaded[1::2])
                    if len(loaded) % 2 or any(q.content[:-2] != a.content[:-2] for q, a in pairs):
                        torn.append(len(loaded))
                    time.sleep(0.001)  # readers that never pause can starve a store's writers
                return
            try:
                for index in range(turns):
                    self._append(store, session_id, _turn(n, index))
            finally:
                with lock:
                    writing[0] -= 1

        assert _run_threads(writers + max(1, threads - writers), work) == []
        assert torn == [], f"{len(torn)} loads returned part of a turn"
        assert turn_problems(list(store.load(session_id)), writers, turns) == []
