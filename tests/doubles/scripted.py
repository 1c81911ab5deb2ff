"""A test plugin: in-memory backends whose behaviour each test scripts.

Registered on a fresh plugin manager with ``create_app(plugins=[ScriptedPlugin(...)])``;
it registers the backends ``memory`` (storage), ``static`` (persona),
``dict`` (secrets) and ``scripted`` (llm).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from twin_server import Message, Persona, Prompt, hookimpl

Step = "str | BaseException | Callable[[Prompt], str]"


class MemoryStore:
    def __init__(self) -> None:
        self.sessions: dict[str, list[Message]] = {}
        self.lock = threading.Lock()
        self.load_failures: list[BaseException] = []
        self.append_failures: list[BaseException] = []
        self.calls: list[str] = []

    def load(self, session_id: str, limit: int | None = None) -> list[Message]:
        self.calls.append("load")
        if self.load_failures:
            raise self.load_failures.pop(0)
        with self.lock:
            messages = list(self.sessions.get(session_id, []))
        return messages[-limit:] if limit else messages

    def append(self, session_id: str, messages: Sequence[Message]) -> None:
        self.calls.append("append")
        if self.append_failures:
            raise self.append_failures.pop(0)
        with self.lock:
            self.sessions.setdefault(session_id, []).extend(messages)

    def delete(self, session_id: str) -> bool:
        self.calls.append("delete")
        with self.lock:
            return self.sessions.pop(session_id, None) is not None


class StaticPersona:
    def __init__(self, persona: Persona | None = None) -> None:
        self.persona = persona or Persona(full_name="Test Person", facts={"headline": "A person who tests"})
        self.failures: list[BaseException] = []

    def load(self) -> Persona:
        if self.failures:
            raise self.failures[0]
        return self.persona


class DictSecrets:
    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, name: str) -> str:
        from twin_server.errors import ConfigurationError

        try:
            return self.values[name]
        except KeyError:
            raise ConfigurationError(f"secret {name} is not set in the test secrets") from None


class ScriptedLLM:
    """Replies by script: each call takes the next step (a reply, an exception to raise, or a function)."""

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        self.steps = list(steps)
        self.prompts: list[Prompt] = []
        self.default: Step = lambda prompt: f"echo: {prompt.messages[-1].content}"

    @property
    def calls(self) -> int:
        return len(self.prompts)

    def _next(self, prompt: Prompt):
        self.prompts.append(prompt)
        step = self.steps.pop(0) if self.steps else self.default
        if isinstance(step, BaseException):
            raise step
        return step(prompt) if callable(step) else step

    def complete(self, prompt: Prompt) -> str:
        return self._next(prompt)

    def stream(self, prompt: Prompt) -> Iterator[str]:
        reply = self._next(prompt)
        if isinstance(reply, str):
            yield from _words(reply)
        else:
            yield from reply


def _words(text: str) -> Iterator[str]:
    words = text.split(" ")
    for i, word in enumerate(words):
        yield word if i == len(words) - 1 else word + " "


class ScriptedPlugin:
    """Holds the backend objects so a test can script and inspect them."""

    __name__ = "scripted-test-plugin"

    def __init__(self, llm_steps: Sequence[Step] = (), secrets: dict[str, str] | None = None) -> None:
        self.store = MemoryStore()
        self.persona = StaticPersona()
        self.secrets = DictSecrets(secrets)
        self.llm = ScriptedLLM(llm_steps)

    @hookimpl
    def register_storage_backends(self, register):
        register("memory", lambda context: self.store)

    @hookimpl
    def register_persona_sources(self, register):
        register("static", lambda context: self.persona)

    @hookimpl
    def register_secret_providers(self, register):
        register("dict", lambda context: self.secrets)

    @hookimpl
    def register_llm_backends(self, register):
        register("scripted", lambda context: self.llm)


SCRIPTED_CONFIG = {"STORAGE": "memory", "PERSONA": "static", "SECRETS": "dict", "LLM": "scripted"}
