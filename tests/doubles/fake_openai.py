"""A local OpenAI-compatible server for tests and benchmarks.

``FakeOpenAI`` serves ``POST /v1/chat/completions`` from a werkzeug server in a
thread on 127.0.0.1 (a free port), records every request it receives, and
answers from a queue of scripted responses, oldest first::

    with FakeOpenAI() as server:
        server.reply("Hi!")                          # a completion (streamed if the request asks)
        server.stream(["Hel", "lo"])                 # SSE chunks, then ``data: [DONE]``
        server.tool_calls([{"name": "record_contact", "arguments": {"email": "a@b.co"}}])
                                                     # a reply asking for tools (streamed as deltas if asked)
        server.error(429, code="rate_limit_exceeded", headers={"retry-after-ms": "250"})
        server.respond(502, "<html>bad gateway</html>", content_type="text/html")
        client = OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)
        ...
        server.requests[0].json["messages"]

With the queue empty it answers ``default_reply`` (instantly, as a benchmark
wants). Any scripted answer can be delayed by ``delay`` seconds (to provoke a
client timeout), and a stream can be held after its first chunk until a
``threading.Event`` is set (to prove the client sees pieces as they come).
Any path other than ``/v1/chat/completions`` answers 404 unless scripted.

Run alone (for a benchmark or a manual try), it serves until its stdin closes::

    python -m tests.doubles.fake_openai [--port N] [--reply TEXT] [--no-record]   # prints its base URL
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

COMPLETIONS_PATH = "/v1/chat/completions"


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; header names are lower-cased."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass(frozen=True)
class Scripted:
    """One scripted answer. ``pieces`` set: a completion (SSE when streaming). ``chunks`` set: raw SSE."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str = "application/json"
    pieces: tuple[str, ...] | None = None
    chunks: tuple[bytes, ...] | None = None
    finish_reason: str = "stop"
    delay: float = 0.0
    hold: threading.Event | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as a real API

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: tests and benchmarks read ``FakeOpenAI.requests`` instead."""


class FakeOpenAI:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 that tests script."""

    def __init__(self, *, default_reply: str = "Hello from the fake model.", model: str = "fake-model",
                 port: int = 0, record: bool = True) -> None:
        self.default_reply = default_reply
        self.model = model
        self.port = port
        self.record = record  # a benchmark sending thousands of requests turns this off
        self._script: deque[Scripted] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> "FakeOpenAI":
        if self._server is not None:
            raise RuntimeError("FakeOpenAI is already running")
        self._server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client's ``base_url`` should be."""
        return self.url + "/v1"

    # -- what was received ---------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the recorded requests and any answers still scripted."""
        with self._lock:
            self._requests.clear()
            self._script.clear()

    @property
    def pending(self) -> int:
        """Scripted answers not used yet."""
        with self._lock:
            return len(self._script)

    # -- scripting -----------------------------------------------------------------

    def reply(self, text: str, *, headers: Mapping[str, str] | None = None, finish_reason: str = "stop",
              delay: float = 0.0) -> None:
        """A completion of ``text``: JSON, or word by word as SSE when the request asks to stream."""
        self._push(Scripted(headers=_pairs(headers), pieces=tuple(_words(text)), finish_reason=finish_reason,
                            delay=delay))

    def tool_calls(self, calls: Sequence[Mapping[str, Any]], *, text: str = "") -> None:
        """A reply asking for tools, ``finish_reason: "tool_calls"``. Each call is ``{"name", "arguments"}``
        (a mapping, sent as JSON, or the raw text to send) and optionally ``"id"``. Streamed, the calls come
        as OpenAI sends them: a delta with the id and name, then the arguments in three fragments."""
        normalised = tuple(
            {"id": call.get("id") or f"call_{i}", "name": call["name"],
             "arguments": call["arguments"] if isinstance(call["arguments"], str) else json.dumps(call["arguments"])}
            for i, call in enumerate(calls)
        )
        self._push(Scripted(pieces=tuple(_words(text)) if text else (), finish_reason="tool_calls",
                            tool_calls=normalised))

    def stream(self, pieces: Sequence[str], *, headers: Mapping[str, str] | None = None, delay: float = 0.0,
               hold: threading.Event | None = None, error: Mapping[str, Any] | None = None) -> None:
        """An SSE stream of exactly these deltas, ending ``data: [DONE]``.

        ``hold``: after the first chunk, wait (up to 10 s) for the event before sending the rest.
        ``error``: after the pieces, send ``data: {"error": error}`` instead of finishing.
        """
        self._push(Scripted(headers=_pairs(headers), chunks=tuple(self._sse(pieces, "stop", error)), delay=delay,
                            hold=hold, content_type="text/event-stream"))

    def error(self, status: int, message: str = "scripted error", *, code: str | None = None,
              type: str | None = None, headers: Mapping[str, str] | None = None, delay: float = 0.0) -> None:
        """An OpenAI-style error: ``{"error": {"message", "type", "param", "code"}}``."""
        body = {"error": {"message": message, "type": type or _default_type(status), "param": None, "code": code}}
        self.respond(status, body, headers=headers, delay=delay)

    def respond(self, status: int, body: bytes | str | Mapping[str, Any] | list[Any] = b"", *,
                headers: Mapping[str, str] | None = None, content_type: str | None = None,
                delay: float = 0.0) -> None:
        """Any status with any headers and body (a mapping or list is sent as JSON)."""
        if isinstance(body, (Mapping, list)):
            raw, kind = json.dumps(body).encode(), content_type or "application/json"
        else:
            raw = body.encode() if isinstance(body, str) else bytes(body)
            kind = content_type or "text/plain; charset=utf-8"
        self._push(Scripted(status=status, headers=_pairs(headers), body=raw, content_type=kind, delay=delay))

    def _push(self, scripted: Scripted) -> None:
        with self._lock:
            self._script.append(scripted)

    # -- the WSGI app --------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_data()
        recorded = RecordedRequest(request.method, request.path,
                                   {k.lower(): v for k, v in request.headers.items()}, body)
        with self._lock:
            if self.record:
                self._requests.append(recorded)
            scripted = self._script.popleft() if self._script else None
        if scripted is None:
            if request.method != "POST" or request.path != COMPLETIONS_PATH:
                scripted = Scripted(status=404, body=b'{"error": {"message": "not found", "type": "invalid_request_error"}}')
            else:
                scripted = Scripted(pieces=tuple(_words(self.default_reply)))
        if scripted.delay:
            time.sleep(scripted.delay)
        return self._answer(scripted, recorded)(environ, start_response)

    def _answer(self, scripted: Scripted, recorded: RecordedRequest) -> Response:
        headers = list(scripted.headers)
        if scripted.pieces is not None:
            wants_stream = _asks_to_stream(recorded)
            if not wants_stream:
                completion = self._completion(scripted.pieces, scripted.finish_reason, scripted.tool_calls)
                return Response(json.dumps(completion).encode(), scripted.status, headers,
                                content_type="application/json")
            chunks: Iterable[bytes] = self._sse(scripted.pieces, scripted.finish_reason, None, scripted.tool_calls)
            return Response(chunks, scripted.status, headers, content_type="text/event-stream")
        if scripted.chunks is not None:
            return Response(_held(scripted.chunks, scripted.hold), scripted.status, headers,
                            content_type=scripted.content_type)
        return Response(scripted.body, scripted.status, headers, content_type=scripted.content_type)

    def _completion(self, pieces: Sequence[str], finish_reason: str,
                    tool_calls: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        text = "".join(pieces)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            message["content"] = text or None
            message["tool_calls"] = [{"id": c["id"], "type": "function",
                                      "function": {"name": c["name"], "arguments": c["arguments"]}} for c in tool_calls]
        return {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(pieces), "total_tokens": 1 + len(pieces)},
        }

    def _sse(self, pieces: Sequence[str], finish_reason: str, error: Mapping[str, Any] | None,
             tool_calls: Sequence[Mapping[str, Any]] = ()) -> Iterator[bytes]:
        ident, created = f"chatcmpl-fake-{next(self._ids)}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        yield chunk({"role": "assistant", "content": ""}, None)
        for piece in pieces:
            yield chunk({"content": piece}, None)
        for index, call in enumerate(tool_calls):
            yield chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                         "function": {"name": call["name"], "arguments": ""}}]}, None)
            arguments, third = call["arguments"], max(1, len(call["arguments"]) // 3)
            for start in range(0, len(arguments), third):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[start:start + third]}}]},
                            None)
        if error is not None:
            yield b"data: " + json.dumps({"error": dict(error)}).encode() + b"\n\n"
            return
        yield chunk({}, finish_reason)
        yield b"data: [DONE]\n\n"


def _held(chunks: Sequence[bytes], hold: threading.Event | None) -> Iterator[bytes]:
    # The role chunk and the first content chunk go out together, then the stream waits.
    first = 2 if hold is not None else len(chunks)
    yield b"".join(chunks[:first])
    if hold is not None:
        hold.wait(timeout=10)
        yield from chunks[first:]


def _asks_to_stream(recorded: RecordedRequest) -> bool:
    try:
        return bool(recorded.json.get("stream"))
    except (ValueError, AttributeError):
        return False


def _words(text: str) -> Iterator[str]:
    words = text.split(" ")
    for i, word in enumerate(words):
        yield word if i == len(words) - 1 else word + " "


def _pairs(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((headers or {}).items())


def _default_type(status: int) -> str:
    return "server_error" if status >= 500 else "invalid_request_error"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.doubles.fake_openai", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--reply", default="Hello from the fake model.", help="the answer to every request")
    parser.add_argument("--no-record", action="store_true", help="do not keep the requests in memory")
    args = parser.parse_args(argv)
    with FakeOpenAI(default_reply=args.reply, port=args.port, record=not args.no_record) as server:
        print(server.base_url, flush=True)
        try:
            sys.stdin.read()  # until the parent closes our stdin (or Ctrl-D)
        except KeyboardInterrupt:
            print("fake OpenAI server stopped", file=sys.stderr)


if __name__ == "__main__":
    main()
