"""A small httpx transport for the SDK: one kept-alive socket per thread, HTTP/1.1 framed by ``wire``.

Why: under the SDK, httpx's own transport (httpcore + h11) was a third of a
call's client CPU (``benchmarks/bench_openai.py``). The SDK still builds the
request, maps the errors and decodes the SSE; only the bytes on the wire go
through here.

- Each thread keeps its own connection to the one origin (gunicorn runs 8
  threads per worker): no lock, no pool. A connection leaves its thread's slot
  while a response is open, so a second request on the same thread opens
  another one rather than sharing it.
- A connection idle for more than ``KEEPALIVE_SECONDS``, or one the server has
  closed (its socket is readable while idle), is dropped before it is reused.
  A thread that ends takes its idle connection with it (its socket is closed).
  Nothing is ever sent twice here: the core retries.
- Errors are httpx's own, as the SDK expects them: ``ConnectTimeout``,
  ``ConnectError``, ``WriteTimeout``/``WriteError``, ``ReadTimeout``/``ReadError``,
  ``RemoteProtocolError``, ``LocalProtocolError``.
- https uses httpx's default verified context (``httpx.create_ssl_context()``,
  which honours ``SSL_CERT_FILE``/``SSL_CERT_DIR``); a request for another
  origin goes through httpx's own transport.
- With a proxy set in the environment for the base URL, ``for_base_url`` gives
  no transport: the SDK's own client (which honours the proxy) is used.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterator

import httpx2 as httpx

from twin_openai import wire

log = logging.getLogger("twin_openai")

#: Drop a connection idle this long (httpx's own default keep-alive expiry).
KEEPALIVE_SECONDS = 5.0
#: What may be left of a body the SDK stopped reading, read on close to keep its connection.
DRAIN_SECONDS = 0.005
DRAIN_BYTES = 65536


def for_base_url(base_url: str) -> "StdlibTransport | None":
    """Our transport for ``base_url``, or None when an environment proxy applies to it (logged once)."""
    url = httpx.URL(base_url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass_environment(url.host, proxies):
        log.info("a proxy is set for %s in the environment: the openai backend uses httpx's own transport",
                 url.scheme)
        return None
    return StdlibTransport(base_url)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class StdlibTransport(httpx.BaseTransport):
    """``httpx.BaseTransport`` for one origin (``base_url``'s scheme, host and port)."""

    def __init__(self, base_url: str, *, ssl_context: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        url = httpx.URL(base_url)
        self.origin = (url.scheme, url.host, url.port or _default_port(url.scheme))
        self.ssl_context = (ssl_context or httpx.create_ssl_context()) if url.scheme == "https" else None
        self.clock = clock
        self._local = threading.local()
        # Weak: a connection idle in the slot of a thread that has ended is closed (its finalizer) and gone.
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._open_lock = threading.Lock()
        self._other: httpx.HTTPTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if (url.scheme, url.host, url.port or _default_port(url.scheme)) != self.origin:
            return self._elsewhere().handle_request(request)
        timeouts = request.extensions.get("timeout") or {}
        connection = self._checkout(timeouts.get("connect"))
        try:
            head = connection.exchange(request, timeouts.get("write"), timeouts.get("read"))
        except BaseException:
            connection.close()
            raise
        return httpx.Response(
            head.status,
            headers=head.headers,
            stream=_Body(connection, head),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    def close(self) -> None:
        with self._open_lock:
            connections, self._open = list(self._open), weakref.WeakSet()
        for connection in connections:
            connection.close()
        if self._other is not None:
            self._other.close()

    @property
    def open_connections(self) -> int:
        """How many sockets are open now, idle or in use (for tests and logs)."""
        return len(self._open)

    def _checkout(self, connect_timeout: float | None) -> "_Connection":
        connection = getattr(self._local, "idle", None)
        if connection is not None:
            self._local.idle = None
            if connection.reusable(self.clock()):
                return connection
            connection.close()
        connection = _Connection(self, connect_timeout)
        with self._open_lock:
            self._open.add(connection)
        return connection

    def _checkin(self, connection: "_Connection") -> None:
        if getattr(self._local, "idle", None) is None:
            connection.idle_since = self.clock()
            self._local.idle = connection
        else:
            connection.close()

    def _forget(self, connection: "_Connection") -> None:
        with self._open_lock:
            self._open.discard(connection)

    def _elsewhere(self) -> httpx.HTTPTransport:
        with self._open_lock:
            if self._other is None:
                self._other = httpx.HTTPTransport()
            return self._other


class _Connection:
    """One socket to the origin, connected at once (so a failure to connect is a ConnectError)."""

    def __init__(self, transport: StdlibTransport, connect_timeout: float | None) -> None:
        self.transport = transport
        self.idle_since = 0.0
        _, host, port = transport.origin
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if transport.ssl_context is not None:
                sock = transport.ssl_context.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
        except OSError as exc:  # refused, unreachable, DNS, a certificate that does not verify
            raise httpx.ConnectError(str(exc)) from exc
        self.sock = sock
        self.reader = sock.makefile("rb")
        self._shut = weakref.finalize(self, _shut, self.reader, sock, host)

    def reusable(self, now: float) -> bool:
        if now - self.idle_since > KEEPALIVE_SECONDS:
            return False
        try:  # readable while idle: the server closed it (or sent what it should not have)
            poller = select.poll()  # not select(): a worker's descriptors pass 1024
            poller.register(self.sock, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def exchange(self, request: httpx.Request, write_timeout: float | None,
                 read_timeout: float | None) -> wire.Head:
        """Send the request, read the response's head."""
        method = request.method.encode("ascii")
        try:
            data = wire.request_bytes(method, request.url.raw_path, request.headers.raw) + request.read()
        except wire.LocalWireError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        try:
            self.sock.settimeout(write_timeout)
            self.sock.sendall(data)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out writing") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc)) from exc
        with _reading():
            self.sock.settimeout(read_timeout)
            return wire.read_head(self.reader, method)

    def close(self) -> None:
        self.transport._forget(self)
        self._shut()


def _shut(reader: object, sock: socket.socket, host: str) -> None:
    """Close a connection's socket: on ``close``, or when the connection is collected unclosed."""
    try:
        reader.close()
        sock.close()
    except OSError:  # closing a socket the peer already reset; it is gone either way
        log.debug("closing a connection to %s failed", host, exc_info=True)


class _reading:
    """Maps what a read raises to httpx's errors."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        if isinstance(exc, TimeoutError):
            raise httpx.ReadTimeout(str(exc) or "timed out reading") from exc
        if isinstance(exc, (wire.WireError, EOFError)):
            raise httpx.RemoteProtocolError(str(exc)) from exc
        if isinstance(exc, OSError):
            raise httpx.ReadError(str(exc)) from exc


class _Body(httpx.SyncByteStream):
    """The response body as it arrives; the connection goes back to its thread's slot once it is all read.

    The SDK stops reading a stream at ``data: [DONE]``, before the chunked
    body's last chunk: whatever of the body is left is read on close, if it
    comes within ``DRAIN_SECONDS`` (in all) and ``DRAIN_BYTES``; else the connection is closed.
    """

    def __init__(self, connection: _Connection, head: wire.Head) -> None:
        self.connection, self.head = connection, head
        self.chunks = wire.body(connection.reader, head)
        self.done = self.failed = False

    def __iter__(self) -> Iterator[bytes]:
        if self.connection is None:
            raise httpx.StreamClosed()
        try:
            with _reading():
                for data in self.chunks:
                    yield data
        except Exception:
            self.failed = True
            raise
        self.done = True

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        if not self.done and not self.failed and self.head.keep_alive:
            self.done = self._drain(connection)
        if self.done and self.head.keep_alive:
            connection.transport._checkin(connection)
        else:
            connection.close()

    def _drain(self, connection: _Connection) -> bool:
        left, deadline = DRAIN_BYTES, time.monotonic() + DRAIN_SECONDS
        try:
            connection.sock.settimeout(DRAIN_SECONDS)
            for data in self.chunks:
                left -= len(data)
                if left < 0 or time.monotonic() > deadline:
                    return False
        except (OSError, ValueError, wire.WireError):  # not there in time, or not HTTP: the connection goes
            return False
        return True
