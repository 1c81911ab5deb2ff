"""A test plugin: the ``echo`` LLM, whose reply names the message it answers ("reply to: <message>").

So a test can tell which reply belongs to which question in a stored history.
"""

from __future__ import annotations

from collections.abc import Iterator

from twin_server import Prompt, hookimpl


class EchoLLM:
    def complete(self, prompt: Prompt) -> str:
        return f"reply to: {prompt.messages[-1].content}"

    def stream(self, prompt: Prompt) -> Iterator[str]:
        yield self.complete(prompt)


@hookimpl
def register_llm_backends(register):
    register("echo", lambda context: EchoLLM())
