"""twin_server.testing's LLM, persona and secrets contracts: third-party backends written against
the kit alone pass them, and each broken one fails the checks its bug breaks (see test_contract_kit.py)."""

from __future__ import annotations

import time

import pytest

from tests.doubles.contract_runner import pytester, run_contract  # noqa: F401  (fixture)
from twin_server import Persona
from twin_server.errors import BackendTimeout, BackendUnavailable, ConfigurationError, PersonaError
from twin_server.testing import LLMBackendContract, PersonaSourceContract, SecretsProviderContract

pytest_plugins = ["pytester"]


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
        __name__,
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
        __name__,
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
        __name__,
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
        __name__,
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
        __name__,
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
        __name__,
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
