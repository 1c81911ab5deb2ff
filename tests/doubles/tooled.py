"""Test doubles for the owner's side: an LLM that asks for tools by script, and a notifier that records.

``ToolLLM`` declares ``supports_tools``; each call takes the next step, a
``Reply`` (text and tool calls), an exception to raise, or a function of the
prompt; streamed, a step's text comes word by word and its calls in a last
empty ``Reply``. ``NotifyRecorder`` is the notifier ``recorder``, keeping
every event it is handed (``fail`` exceptions are raised first, one per call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from twin_server import Prompt, Reply, ToolCall, hookimpl


def call(name: str, arguments: Any, ident: str = "") -> ToolCall:
    return ToolCall(ident or f"call-{name}-{abs(hash(str(arguments))) % 10_000}", name, arguments)


def asks(*calls: ToolCall, text: str = "") -> Reply:
    return Reply(text, tool_calls=calls)


class ToolLLM:
    supports_tools = True

    def __init__(self, steps: Sequence[Any] = ()) -> None:
        self.steps = list(steps)
        self.prompts: list[Prompt] = []
        self.default: Any = lambda prompt: Reply(f"echo: {prompt.messages[-1].content}")

    def _next(self, prompt: Prompt) -> Any:
        self.prompts.append(prompt)
        step = self.steps.pop(0) if self.steps else self.default
        if isinstance(step, BaseException):
            raise step
        return step(prompt) if callable(step) else step

    def complete(self, prompt: Prompt) -> Any:
        return self._next(prompt)

    def stream(self, prompt: Prompt) -> Iterator[str]:
        reply = self._next(prompt)
        words = str(reply).split(" ") if str(reply) else []
        for i, word in enumerate(words):
            yield word if i == len(words) - 1 else word + " "
        if isinstance(reply, Reply) and (reply.tool_calls or not reply.covered):
            yield Reply("", tool_calls=reply.tool_calls, covered=reply.covered)


class NotifyRecorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.events: list[Any] = []
        self.fail: list[BaseException] = []
        self.delay = delay
        self.calls = 0
        self._lock = threading.Condition()

    def notify(self, event: Any, timeout: float | None = None) -> None:
        with self._lock:
            self.calls += 1
            if self.fail:
                raise self.fail.pop(0)
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.events.append(event)
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.events) < count and time.monotonic() < deadline:
                self._lock.wait(max(0.0, deadline - time.monotonic()))
            return list(self.events)


class OwnerTestPlugin:
    """Registers the LLM ``tooled`` and the notifier ``recorder``."""

    __name__ = "owner-test-plugin"

    def __init__(self, steps: Sequence[Any] = ()) -> None:
        self.llm = ToolLLM(steps)
        self.notifier = NotifyRecorder()

    @hookimpl
    def register_llm_backends(self, register):
        register("tooled", lambda context: self.llm)

    @hookimpl
    def register_notifiers(self, register):
        register("recorder", lambda context: self.notifier)
