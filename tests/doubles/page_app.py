"""The app the browser tests drive under gunicorn (``tests.doubles.page_app:app``).

The installed local plugin gives the filesystem store (``TWIN_DATA_DIR``) and
the bundled example persona (Ada Quill); this module adds the ``page-test``
LLM, which answers like the offline model but streams slowly, word by word, so
a browser can see the reply grow. A message containing a marker picks a
failure instead:

- ``[busy]``: the LLM is rate limited (``RateLimited(retry_after=5)``) before its first piece;
- ``[cut]``: a few words, then the LLM fails mid-stream;
- ``[xss]``: the reply is ``XSS_REPLY``, markup that must stay text;
- ``[fast]``: the whole reply in one piece at once (``done`` lands before the page paints a piece);
- ``[slow]``: a few words, then ``SLOW_PAUSE`` seconds before each further word (time to reload mid-reply).

Run it with ``TWIN_LLM=page-test`` and ``TWIN_RETRY_LLM_MAX_ATTEMPTS=1``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from twin_local.offline import OfflineLLM
from twin_server import Prompt, hookimpl
from twin_server.app import create_app
from twin_server.errors import BackendUnavailable, RateLimited

XSS_REPLY = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
FIRST_PIECE_DELAY = 0.35
PIECE_DELAY = 0.06
SLOW_PAUSE = 2.5


class SlowLLM:
    def __init__(self) -> None:
        self.offline = OfflineLLM()

    def complete(self, prompt: Prompt) -> str:
        return "".join(self.stream(prompt))

    def stream(self, prompt: Prompt) -> Iterator[str]:
        text = prompt.messages[-1].content
        if "[fast]" in text:
            yield self.offline.complete(prompt)
            return
        time.sleep(FIRST_PIECE_DELAY)
        if "[busy]" in text:
            raise RateLimited("the test LLM is busy", retry_after=5)
        if "[xss]" in text:
            yield XSS_REPLY
            return
        if "[cut]" in text:
            yield from ("Let ", "me ", "think ", "about ")
            raise BackendUnavailable("the test LLM fell over")
        for n, piece in enumerate(self.offline.stream(prompt)):
            yield piece
            time.sleep(SLOW_PAUSE if "[slow]" in text and n >= 2 else PIECE_DELAY)


class PageTestPlugin:
    __name__ = "page-test-plugin"

    @hookimpl
    def register_llm_backends(self, register):
        register("page-test", lambda context: SlowLLM())


app = create_app(plugins=[PageTestPlugin()])
