"""A test plugin: the ``paced`` LLM, which emits tokens on a fixed schedule.

``TWIN_PACED_INTERVAL`` seconds between tokens (default 0.02),
``TWIN_PACED_TOKENS`` tokens per reply (default 50). Token ``i`` is due
``(i + 1) * interval`` after ``stream`` is called, whatever the reader does,
and is ``"w<i> "``; with ``TWIN_PACED_STAMPS=true`` it is the wall-clock time
it was emitted instead (``"<unix seconds> "``), so a client on the same
machine can measure how late each one reaches it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from twin_server import Prompt, hookimpl
from twin_server import config as settings


class PacedLLM:
    def __init__(self, interval: float, tokens: int, stamps: bool = False) -> None:
        self.interval, self.tokens, self.stamps = interval, tokens, stamps

    def complete(self, prompt: Prompt) -> str:
        return "".join(self.stream(prompt))

    def stream(self, prompt: Prompt) -> Iterator[str]:
        started = time.monotonic()
        for i in range(self.tokens):
            wait = started + (i + 1) * self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            yield f"{time.time():.6f} " if self.stamps else f"w{i} "


@hookimpl
def register_llm_backends(register):
    def paced(context):
        return PacedLLM(
            settings.get_float(context.config, "PACED_INTERVAL", 0.02, minimum=0),
            settings.get_int(context.config, "PACED_TOKENS", 50, minimum=1),
            settings.get_bool(context.config, "PACED_STAMPS", False),
        )

    register("paced", paced)
