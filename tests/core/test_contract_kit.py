"""twin_server.testing's store contract: a third-party store written against the kit alone passes it,
and each broken store fails the checks its bug breaks.

The passing store runs the kit here, as an author's test module would. Each broken
store (one bug apiece) runs it in an inner pytest session (``pytester``), and the
test asserts which checks fail and which still pass.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import twin_server.testing
from tests.doubles.contract_runner import pytester, run_contract  # noqa: F401  (fixture)
from twin_server import Message
from twin_server.testing import ConversationStoreContract, turn_problems

pytest_plugins = ["pytester"]


# -- a third-party store, and its mutants ------------------------------------------


class MemoryStore:
    """A ConversationStore keeping every session in a dict, under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, list[Message]] = {}

    def load(self, session_id, limit=None):
        with self._lock:
            messages = list(self._sessions.get(session_id, ()))
        if limit is None:
            return messages
        return messages[-limit:] if limit else []

    def append(self, session_id, messages):
        with self._lock:
            self._sessions.setdefault(session_id, []).extend(messages)

    def delete(self, session_id):
        with self._lock:
            return self._sessions.pop(session_id, None) is not None


class LosesConcurrentAppends(MemoryStore):
    def append(self, session_id, messages):
        current = self._sessions.get(session_id, [])  # read, modify, write: no lock
        time.sleep(0.0005)
        self._sessions[session_id] = current + list(messages)


class SplitsTurns(MemoryStore):
    def append(self, session_id, messages):
        for message in messages:  # one message at a time: another turn can land in between
            super().append(session_id, [message])
            time.sleep(0.0002)


class ReadsHalfWrittenTurns(MemoryStore):
    def load(self, session_id, limit=None):
        messages = list(self._sessions.get(session_id, ()))  # no lock: sees an append half done
        return messages[-limit:] if limit else ([] if limit == 0 else messages)

    def append(self, session_id, messages):
        with self._lock:
            stored = self._sessions.setdefault(session_id, [])
            for message in messages:
                stored.append(message)
                time.sleep(0.0002)


class NewestFirst(MemoryStore):
    def load(self, session_id, limit=None):
        return super().load(session_id, limit)[::-1]


class IgnoresLimit(MemoryStore):
    def load(self, session_id, limit=None):
        return super().load(session_id)


class RaisesOnUnknownDelete(MemoryStore):
    def delete(self, session_id):
        with self._lock:
            del self._sessions[session_id]  # KeyError for a session never seen
            return True


class SplitsOnLineSeparators(MemoryStore):
    """Keeps each session as JSON lines in one string, read back with str.splitlines()."""

    def __init__(self) -> None:
        super().__init__()
        self._text: dict[str, str] = {}

    def load(self, session_id, limit=None):
        with self._lock:
            lines = self._text.get(session_id, "").splitlines()  # also splits at U+2028, U+0085, \r
        messages = [Message.from_dict(json.loads(line)) for line in lines]
        if limit is None:
            return messages
        return messages[-limit:] if limit else []

    def append(self, session_id, messages):
        text = "".join(json.dumps(m.to_dict(), ensure_ascii=False) + "\n" for m in messages)
        with self._lock:
            self._text[session_id] = self._text.get(session_id, "") + text

    def delete(self, session_id):
        with self._lock:
            return self._text.pop(session_id, None) is not None


class TestMemoryStore(ConversationStoreContract):
    @pytest.fixture
    def store(self):
        return MemoryStore()


STORE_MUTANTS = {
    "LosesConcurrentAppends": (
        {"test_concurrent_appends_lose_nothing_and_never_split_a_turn", "test_a_load_never_sees_half_a_turn"},
        {"test_messages_load_oldest_first", "test_limit_keeps_the_newest_messages_oldest_first[limit=3]"},
    ),
    "SplitsTurns": (
        {"test_concurrent_appends_lose_nothing_and_never_split_a_turn", "test_a_load_never_sees_half_a_turn"},
        {"test_a_turn_is_appended_whole", "test_messages_round_trip_every_field"},
    ),
    "ReadsHalfWrittenTurns": (
        {"test_a_load_never_sees_half_a_turn"},
        {"test_concurrent_appends_lose_nothing_and_never_split_a_turn", "test_messages_load_oldest_first"},
    ),
    "NewestFirst": (
        {"test_messages_load_oldest_first", "test_limit_keeps_the_newest_messages_oldest_first[limit=3]",
         "test_limit_keeps_the_newest_messages_oldest_first[limit=None]", "test_sessions_are_independent"},
        {"test_deleting_an_unknown_session_returns_false", "test_limit_keeps_the_newest_messages_oldest_first[limit=1]"},
    ),
    "IgnoresLimit": (
        {f"test_limit_keeps_the_newest_messages_oldest_first[limit={n}]" for n in (0, 1, 3)},
        {f"test_limit_keeps_the_newest_messages_oldest_first[limit={n}]" for n in (10, 11, 1000, None)}
        | {"test_messages_load_oldest_first"},
    ),
    "RaisesOnUnknownDelete": (
        {"test_deleting_an_unknown_session_returns_false", "test_delete_returns_true_then_false"},
        {"test_messages_load_oldest_first", "test_concurrent_appends_lose_nothing_and_never_split_a_turn"},
    ),
    "SplitsOnLineSeparators": (
        {"test_messages_round_trip_every_field"},
        {"test_messages_load_oldest_first", "test_concurrent_appends_lose_nothing_and_never_split_a_turn"},
    ),
}


@pytest.mark.parametrize("mutant", sorted(STORE_MUTANTS))
def test_a_broken_store_fails_the_contract(pytester, mutant):
    must_fail, must_pass = STORE_MUTANTS[mutant]
    passed, failed = run_contract(
        pytester,
        __name__,
        "ConversationStoreContract",
        f"""
        @pytest.fixture
        def store(self):
            return here.{mutant}()
        """,
    )
    assert must_fail <= failed, sorted(failed)
    assert must_pass <= passed, sorted(failed)


def test_the_turn_checker_catches_loss_splits_duplicates_and_disorder():
    def turn(worker, index):
        return [Message("user", f"w{worker}-t{index}-q"), Message("assistant", f"w{worker}-t{index}-a")]

    good = [m for index in range(3) for worker in range(2) for m in turn(worker, index)]
    assert turn_problems(good, 2, 3) == []
    assert turn_problems(good[2:4] + good[:2] + good[4:], 2, 3) == []  # writers may interleave whole turns
    assert any("1 turns lost" in p for p in turn_problems(good[:4] + good[6:], 2, 3))
    assert any("split" in p for p in turn_problems(good[:2] + [good[2], good[4], good[3], good[5]] + good[6:], 2, 3))
    assert any("twice" in p for p in turn_problems(good + good[:2], 2, 3))
    assert any("order" in p for p in turn_problems(turn(0, 1) + turn(0, 0) + good[2:4] + good[6:], 2, 3))


# -- what the kit itself depends on -------------------------------------------------


def test_the_kit_imports_only_pytest_the_standard_library_and_the_public_api():
    allowed = {"pytest", "twin_server", "twin_server.errors"}
    for path in Path(twin_server.testing.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                ok = (name in allowed or name.startswith("twin_server.testing")
                      or name.split(".")[0] in sys.stdlib_module_names)
                assert ok, f"{path.name} imports {name}"


def test_importing_the_kit_loads_no_web_framework_or_sdk():
    code = ("import sys, twin_server.testing; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'werkzeug', 'boto3', 'openai'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
