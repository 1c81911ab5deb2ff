"""Many connections from one test process, bounded in count and time, to 127.0.0.1 only.

``open_requests`` sends one whole request on each of many sockets at once (no
thread per connection); ``heads`` reads the status and headers of each answer
as they come, until a deadline; ``Slowloris`` keeps sockets busy sending a
request one byte at a time.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname != LOOPBACK:
        raise ValueError(f"attacks go to {LOOPBACK} only, not {parts.hostname}")
    return LOOPBACK, parts.port


def post(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


def open_requests(url: str, request: bytes, count: int) -> list[socket.socket]:
    """``count`` connections, each with ``request`` sent whole."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(address(url), timeout=10)
        sock.sendall(request)
        sockets.append(sock)
    return sockets


def heads(
    sockets: Iterable[socket.socket], deadline: float, want: int | None = None
) -> dict[socket.socket, tuple[int, dict[str, str]]]:
    """Status and headers of the answer on each socket, for those that answered before ``deadline``
    (or until ``want`` have answered).

    A socket whose answer is not a 200 is closed as soon as it is read, as any
    client does: gunicorn's gthread worker lingers up to 2 s on its main thread
    over each connection it closes until the peer closes too.
    """
    selector, buffers, answered = selectors.DefaultSelector(), {}, {}
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = b""
    try:
        while buffers and time.monotonic() < deadline and (want is None or len(answered) < want):
            for key, _ in selector.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
                sock = key.fileobj
                try:
                    chunk = sock.recv(65536)
                except ConnectionError:  # reset by the server: no answer on this one
                    chunk = b""
                buffers[sock] += chunk
                if b"\r\n\r\n" in buffers[sock]:
                    selector.unregister(sock)
                    head = buffers.pop(sock).split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                    fields = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
                    answered[sock] = (int(head[0].split()[1]), fields)
                    if answered[sock][0] != 200:
                        sock.close()
                elif not chunk:
                    selector.unregister(sock)
                    del buffers[sock]
    finally:
        selector.close()
    return answered


def close_all(sockets: Iterable[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


class Slowloris:
    """``count`` sockets that send a request one byte every ``interval`` seconds, for ``rounds`` rounds at most.

    ``slow="headers"`` drips a GET's headers; ``slow="body"`` sends a POST's
    headers whole, then drips its body.
    """

    def __init__(self, url: str, count: int, *, interval: float = 2.0, rounds: int = 5, slow: str = "headers") -> None:
        self.target, self.count, self.interval, self.rounds = address(url), count, interval, rounds
        if slow == "headers":
            self.request = f"GET /health HTTP/1.1\r\nHost: {LOOPBACK}\r\nX-Padding: {'a' * 64}\r\n\r\n".encode()
            first = 1
        else:
            body = b'{"message": "' + b"a" * 80 + b'"}'
            head = (f"POST /chat HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            self.request, first = head + body, len(head) + 1
        self.first = first
        self.sockets: list[socket.socket] = []
        self.sent = 0
        self.dropped: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, name="slowloris", daemon=True)

    def __enter__(self) -> "Slowloris":
        for _ in range(self.count):
            sock = socket.create_connection(self.target, timeout=5)
            sock.sendall(self.request[:self.first])
            self.sockets.append(sock)
        self.sent = self.first
        self._thread.start()
        return self

    def _drip(self) -> None:
        for _ in range(self.rounds):
            if self._stop.wait(self.interval) or self.sent >= len(self.request) - 1:
                return
            for sock in self.sockets:
                if sock not in self.dropped:
                    try:
                        sock.sendall(self.request[self.sent:self.sent + 1])
                    except OSError:  # the server gave up on this one: what a front should do
                        self.dropped.add(sock)
            self.sent += 1

    def wait_rounds(self, rounds: int) -> None:
        """Until ``rounds`` more bytes went out on every socket (bounded by the rounds' own time)."""
        target = self.sent + rounds
        deadline = time.monotonic() + self.interval * (rounds + 1)
        while self.sent < target and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        close_all(self.sockets)
