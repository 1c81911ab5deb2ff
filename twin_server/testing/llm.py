"""The contract every language-model backend must keep, as a pytest class to subclass."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from twin_server import Message, Persona, Prompt
from twin_server.errors import TransientError, TwinError
from twin_server.testing._optional import OptionalChecks

__all__ = ["LLMBackendContract"]

PERSONA = Persona(
    full_name="Contract Tester",
    facts={"headline": "A fictional person who tests language-model backends"},
    summary="I test language-model backends for twin-server. I live in a test suite.",
)


def _run(llm, prompt: Prompt, way: str) -> str:
    if way == "complete":
        return llm.complete(prompt)
    return "".join(llm.stream(prompt))


class LLMBackendContract(OptionalChecks):
    """Subclass as ``class TestMyLLM(LLMBackendContract)`` and give it an ``llm`` fixture.

    Overridable:

    - ``make_prompt`` fixture: ``make_prompt(timeout=None) -> Prompt``, a prompt your backend
      can answer (default: a short system prompt, one user question, a fictional persona);
    - ``supports_timeout_check`` (default True) with a ``slow_llm`` fixture: a backend that
      would take longer than ``timeout_seconds + timeout_slack`` to answer (e.g. pointed at a
      server that waits 3 s before its reply). Given a prompt whose ``timeout`` is
      ``timeout_seconds``, each call must return, or raise a ``TransientError`` (such as
      ``BackendTimeout``), within ``timeout_seconds + timeout_slack``;
    - ``supports_failure_check`` (default True) with a ``failing_llm`` fixture: a backend whose
      service refuses every call (e.g. answers 500 or 400). Each call must raise a
      ``twin_server.errors.TwinError`` subclass, never the vendor's own exception.

    Set a ``supports_*`` attribute to False only when the backend cannot be made slow or made
    to fail (say why in a comment): its checks are then left out of your class, not skipped.
    """

    optional_checks = {
        "supports_timeout_check": ("test_a_slow_call_ends_within_the_prompts_timeout",),
        "supports_failure_check": ("test_failures_are_core_errors",),
    }
    supports_timeout_check: bool = True
    supports_failure_check: bool = True
    timeout_seconds: float = 0.25
    timeout_slack: float = 1.0

    @pytest.fixture
    def llm(self):
        raise NotImplementedError("an LLMBackendContract subclass must define an `llm` fixture")

    @pytest.fixture
    def make_prompt(self) -> Callable[..., Prompt]:
        def make(timeout: float | None = None) -> Prompt:
            return Prompt(
                system="You are Contract Tester. Answer in one short sentence.",
                messages=(Message("user", "Hello! What do you do?"),),
                persona=PERSONA,
                timeout=timeout,
            )

        return make

    @pytest.fixture
    def prompt(self, make_prompt) -> Prompt:
        return make_prompt()

    def test_complete_returns_text(self, llm, prompt):
        text = llm.complete(prompt)
        assert isinstance(text, str)
        assert text.strip()

    def test_stream_yields_text_pieces(self, llm, prompt):
        pieces = list(llm.stream(prompt))
        assert pieces, "stream yielded nothing"
        assert all(isinstance(piece, str) for piece in pieces), [type(p).__name__ for p in pieces]
        assert "".join(pieces).strip()

    def test_a_stream_can_be_abandoned_after_its_first_piece(self, llm, prompt):
        pieces = iter(llm.stream(prompt))
        assert isinstance(next(pieces), str)
        close = getattr(pieces, "close", None)
        if close is not None:  # a generator: the core closes it when the client goes away
            close()

    @pytest.mark.parametrize("way", ["complete", "stream"])
    def test_a_prompt_with_a_timeout_is_answered(self, llm, make_prompt, way):
        assert _run(llm, make_prompt(timeout=30.0), way).strip()

    @pytest.mark.parametrize("way", ["complete", "stream"])
    def test_a_slow_call_ends_within_the_prompts_timeout(self, request, make_prompt, way):
        slow_llm = request.getfixturevalue("slow_llm")
        bound = self.timeout_seconds + self.timeout_slack
        started = time.monotonic()
        try:
            _run(slow_llm, make_prompt(timeout=self.timeout_seconds), way)
        except TransientError:
            pass  # BackendTimeout (or another transient error): the core may retry within its deadline
        elapsed = time.monotonic() - started
        assert elapsed <= bound, f"{way} took {elapsed:.2f}s with prompt.timeout={self.timeout_seconds}s"

    @pytest.mark.parametrize("way", ["complete", "stream"])
    def test_failures_are_core_errors(self, request, prompt, way):
        failing_llm = request.getfixturevalue("failing_llm")
        with pytest.raises(Exception) as raised:
            _run(failing_llm, prompt, way)
        assert isinstance(raised.value, TwinError), (
            f"{type(raised.value).__module__}.{type(raised.value).__name__} is not a twin_server.errors "
            f"exception: translate it at the backend's boundary"
        )
