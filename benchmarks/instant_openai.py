"""An OpenAI-compatible server that answers every chat completion at once, at a few µs of CPU.

tests/doubles/fake_openai.py (a threaded werkzeug server) costs more CPU per request
than the client it serves, which would cap a benchmark at the fake's speed. This
one is an asyncio protocol with one canned completion and HTTP/1.1 keep-alive;
it reads the body only to find where the next request starts.

    python -m benchmarks.instant_openai     # prints its base URL; serves until stdin closes

A benchmark starts it with ``running()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

COMPLETION = json.dumps({
    "id": "chatcmpl-instant", "object": "chat.completion", "created": 1700000000, "model": "instant",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Fine, thanks."},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
}).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-request-id: req-instant\r\n"
            b"Content-Length: " + str(len(COMPLETION)).encode() + b"\r\n\r\n" + COMPLETION)


class Instant(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buffer[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.transport.write(RESPONSE)


@contextlib.contextmanager
def running() -> Iterator[tuple[str, int]]:
    """This server in a child process, until the block ends; yields (base URL, pid)."""
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.instant_openai"],
                               cwd=Path(__file__).resolve().parent.parent,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the instant OpenAI server did not start (said {base_url!r})")
        yield base_url, process.pid
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def main() -> None:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Instant, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(loop.stop)), daemon=True).start()
    loop.run_forever()


if __name__ == "__main__":
    main()
