"""twin_server.testing: a third-party backend written against the kit alone passes it; broken ones fail it.

The passing backends below run the kit here, as an author's test module would.
Each broken backend (one bug apiece) runs the kit in an inner pytest session
(``pytester``), and the test asserts which contract checks fail and which still pass.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import twin_server.testing
from twin_server import Message, Persona
from twin_server.errors import BackendTimeout, BackendUnavailable, ConfigurationError, PersonaError
from twin_server.testing import (
    ConversationStoreContract,
    LLMBackendContract,
    PersonaSourceContract,
    SecretsProviderContract,
    turn_problems,
)

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


# -- a third-party LLM, persona source and secrets provider, and their mutants --------------


class EchoLLM:
    """Answers by echoing the question; ``delay`` makes it slow, ``broken`` makes it fail."""

    def __init__(self, delay: float = 0.0, broken: bool = False) -> None:
        self.delay, self.broken = delay, broken

    def _wait(self, prompt):
        if self.broken:
            raise BackendUnavailable("the echo service is down")
        if prompt.timeout is not None and self.delay > prompt.timeout:
            time.sleep(prompt.timeout)
            raise BackendTimeout("the echo did not come back in time")
        time.sleep(self.delay)

    def complete(self, prompt):
        self._wait(prompt)
        return f"You said: {prompt.messages[-1].content}"

    def stream(self, prompt):
        self._wait(prompt)
        for word in self.complete(prompt.with_timeout(None)).split(" "):
            yield word + " "


class IgnoresTimeout(EchoLLM):
    def _wait(self, prompt):
        if self.broken:
            raise BackendUnavailable("the echo service is down")
        time.sleep(self.delay)


class LeaksVendorErrors(EchoLLM):
    def _wait(self, prompt):
        if self.broken:
            raise ConnectionError("echo.example: connection refused")


class StreamsBytes(EchoLLM):
    def stream(self, prompt):
        for piece in super().stream(prompt):
            yield piece.encode()


class TestEchoLLM(LLMBackendContract):
    @pytest.fixture
    def llm(self):
        return EchoLLM()

    @pytest.fixture
    def slow_llm(self):
        return EchoLLM(delay=5.0)

    @pytest.fixture
    def failing_llm(self):
        return EchoLLM(broken=True)


class FixedPersona:
    def __init__(self, persona: Persona | None) -> None:
        self.persona = persona

    def load(self):
        if self.persona is None:
            raise PersonaError("facts.json is missing")
        return self.persona


class PersonaStampedOnEachLoad(FixedPersona):
    def load(self):
        return Persona(full_name="Ada Quill", facts={"loaded_at": time.perf_counter_ns()})


class BrokenRaisesValueError(FixedPersona):
    def load(self):
        if self.persona is None:
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        return self.persona


class TestFixedPersona(PersonaSourceContract):
    @pytest.fixture
    def persona_source(self):
        return FixedPersona(Persona(full_name="Ada Quill", facts={"city": "Lisbon"}))

    @pytest.fixture
    def broken_persona_source(self):
        return FixedPersona(None)


class DictSecrets:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = dict(values)

    def __repr__(self):
        return f"DictSecrets({len(self._values)} secrets)"

    def get(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise ConfigurationError(f"secret {name} is not set: add it to the vault") from None


class LeaksValuesInItsMessage(DictSecrets):
    def get(self, name):
        if name not in self._values:
            raise ConfigurationError(f"secret {name} is not set; the vault holds {self._values}")
        return self._values[name]


class RaisesKeyError(DictSecrets):
    def get(self, name):
        return self._values[name]


class TestDictSecrets(SecretsProviderContract):
    @pytest.fixture
    def known_secret(self):
        return "CONTRACT_API_KEY", "sk-contract-4a1f9c"

    @pytest.fixture
    def secrets(self, known_secret):
        return DictSecrets(dict([known_secret]))


# -- running the kit against a mutant -----------------------------------------------


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester whose inner sessions load no installed plugin (hypothesis, playwright...): 10x faster."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def run_contract(pytester, contract: str, body: str) -> tuple[set[str], set[str]]:
    """Run ``class TestSubject(<contract>)`` with ``body`` in an inner session; (passed, failed) test names.

    ``body`` refers to this module's classes as ``here.<Name>``.
    """
    pytester.makepyfile(
        test_subject=f"import sys\n\nimport pytest\n\nfrom twin_server.testing import {contract}\n\n"
        f"here = sys.modules[{__name__!r}]\n\n\nclass TestSubject({contract}):\n"
        + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
        + "\n"
    )
    recorded = pytester.inline_run("-p", "no:cacheprovider")
    passed, skipped, failed = recorded.listoutcomes()
    assert skipped == []
    name = lambda report: report.nodeid.rsplit("::", 1)[-1]  # noqa: E731
    return {name(r) for r in passed}, {name(r) for r in failed}


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


ALWAYS = {
    "test_complete_returns_text",
    "test_stream_yields_text_pieces",
    "test_a_stream_can_be_abandoned_after_its_first_piece",
    "test_a_prompt_with_a_timeout_is_answered[complete]",
    "test_a_prompt_with_a_timeout_is_answered[stream]",
}
TIMEOUT = {f"test_a_slow_call_ends_within_the_prompts_timeout[{way}]" for way in ("complete", "stream")}
FAILURE = {f"test_failures_are_core_errors[{way}]" for way in ("complete", "stream")}

LLM_MUTANTS = {
    "IgnoresTimeout": (TIMEOUT, ALWAYS | FAILURE),
    "LeaksVendorErrors": (FAILURE, ALWAYS | TIMEOUT),
    "StreamsBytes": ({"test_stream_yields_text_pieces", "test_a_prompt_with_a_timeout_is_answered[stream]"},
                     {"test_complete_returns_text"} | FAILURE),
}


@pytest.mark.parametrize("mutant", sorted(LLM_MUTANTS))
def test_a_broken_llm_fails_the_contract(pytester, mutant):
    must_fail, must_pass = LLM_MUTANTS[mutant]
    passed, failed = run_contract(
        pytester,
        "LLMBackendContract",
        f"""
        timeout_seconds = 0.05
        timeout_slack = 0.5

        @pytest.fixture
        def llm(self):
            return here.{mutant}()

        @pytest.fixture
        def slow_llm(self):
            return here.{mutant}(delay=0.8)

        @pytest.fixture
        def failing_llm(self):
            return here.{mutant}(broken=True)
        """,
    )
    assert must_fail <= failed, sorted(failed)
    assert must_pass <= passed, sorted(failed)


def test_a_check_switched_off_is_left_out_not_skipped(pytester):
    passed, failed = run_contract(
        pytester,
        "LLMBackendContract",
        """
        supports_timeout_check = False
        supports_failure_check = False

        @pytest.fixture
        def llm(self):
            return here.EchoLLM()
        """,
    )
    assert (passed, failed) == (ALWAYS, set())


def test_a_check_left_on_without_its_fixture_fails(pytester):
    passed, failed = run_contract(
        pytester,
        "LLMBackendContract",
        """
        @pytest.fixture
        def llm(self):
            return here.EchoLLM()
        """,
    )
    assert (passed, failed) == (ALWAYS, TIMEOUT | FAILURE)


def test_a_check_switched_back_on_in_a_subclass_returns():
    class Off(LLMBackendContract):
        supports_timeout_check = False

    class On(Off):
        supports_timeout_check = True

    assert Off.test_a_slow_call_ends_within_the_prompts_timeout is None
    assert On.test_a_slow_call_ends_within_the_prompts_timeout is (
        LLMBackendContract.test_a_slow_call_ends_within_the_prompts_timeout
    )
    with pytest.raises(TypeError, match="True or False"):
        type("Vague", (LLMBackendContract,), {"supports_failure_check": "yes"})


PERSONA_MUTANTS = {
    "PersonaStampedOnEachLoad": ({"test_loads_without_a_change_are_equal", "test_concurrent_loads_agree"},
                                 {"test_load_returns_a_persona_with_a_name"}),
    "BrokenRaisesValueError": ({"test_a_broken_persona_raises_persona_error"},
                               {"test_load_returns_a_persona_with_a_name", "test_loads_without_a_change_are_equal"}),
}


@pytest.mark.parametrize("mutant", sorted(PERSONA_MUTANTS))
def test_a_broken_persona_source_fails_the_contract(pytester, mutant):
    must_fail, must_pass = PERSONA_MUTANTS[mutant]
    passed, failed = run_contract(
        pytester,
        "PersonaSourceContract",
        f"""
        @pytest.fixture
        def persona_source(self):
            return here.{mutant}(here.Persona(full_name="Ada Quill"))

        @pytest.fixture
        def broken_persona_source(self):
            return here.{mutant}(None)
        """,
    )
    assert must_fail <= failed, sorted(failed)
    assert must_pass <= passed, sorted(failed)


def test_a_persona_without_a_name_fails_the_contract(pytester):
    _, failed = run_contract(
        pytester,
        "PersonaSourceContract",
        """
        supports_broken_check = False

        @pytest.fixture
        def persona_source(self):
            return here.FixedPersona(here.Persona(full_name="  "))
        """,
    )
    assert failed == {"test_load_returns_a_persona_with_a_name"}


SECRETS_MUTANTS = {
    "LeaksValuesInItsMessage": ({"test_no_message_or_repr_holds_a_secret_value"},
                                {"test_get_returns_the_value", "test_an_unknown_secret_is_a_configuration_error_naming_it"}),
    "RaisesKeyError": ({"test_an_unknown_secret_is_a_configuration_error_naming_it",
                        "test_no_message_or_repr_holds_a_secret_value"}, {"test_get_returns_the_value"}),
}


@pytest.mark.parametrize("mutant", sorted(SECRETS_MUTANTS))
def test_a_broken_secrets_provider_fails_the_contract(pytester, mutant):
    must_fail, must_pass = SECRETS_MUTANTS[mutant]
    passed, failed = run_contract(
        pytester,
        "SecretsProviderContract",
        f"""
        @pytest.fixture
        def known_secret(self):
            return "CONTRACT_API_KEY", "sk-contract-4a1f9c"

        @pytest.fixture
        def secrets(self, known_secret):
            return here.{mutant}(dict([known_secret]))
        """,
    )
    assert must_fail <= failed, sorted(failed)
    assert must_pass <= passed, sorted(failed)


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
