"""``FakeOpenAI`` behind a keep-alive HTTP/1.1 server, counting the connections it accepts; optionally https.

werkzeug's development server closes every connection after one response (and
drains the socket to its end first), so a client's connection reuse cannot be
seen against ``FakeOpenAI`` itself. This serves the same WSGI app (the same
scripting: ``reply``, ``stream``, ``hold``, ``delay``...) from the stdlib's
``http.server`` with keep-alive::

    with KeepAliveOpenAI() as server:
        ...two calls...
        assert server.connections == 1
        server.close_idle()                       # the server drops its connections, as real ones do
    with KeepAliveOpenAI(tls=tmp_path) as server:  # https with a throwaway certificate: server.ca_file
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.doubles.fake_openai import FakeOpenAI
from tests.doubles.smtp import self_signed


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: "KeepAliveOpenAI"

    def setup(self) -> None:
        super().setup()
        self.fake._opened(self.connection)

    def finish(self) -> None:
        self.fake._closed(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: tests read ``requests`` instead."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-answer (a test of its timeouts)

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        path, _, query = self.path.partition("?")
        environ = {
            "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version, "CONTENT_LENGTH": str(length),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "https" if self.fake.ca_file else "http", "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
        started: list[Any] = []
        result = self.fake._wsgi(environ, lambda status, headers, exc_info=None: started.extend((status, headers)))
        try:
            status, headers = started
            self.send_response(int(status.split()[0]), status.split(None, 1)[1])
            counted = any(name.lower() == "content-length" for name, _ in headers)
            for name, value in headers:
                self.send_header(name, value)
            if not counted:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for data in result:
                if counted:
                    self.wfile.write(data)
                elif data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            if not counted:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            if hasattr(result, "close"):
                result.close()


class KeepAliveOpenAI(FakeOpenAI):
    def __init__(self, *, tls: Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connections = 0
        self.ca_file: Path | None = None
        self._sockets: set[socket.socket] = set()
        self._counted = threading.Condition()
        self._ssl: ssl.SSLContext | None = None
        self._http: ThreadingHTTPServer | None = None
        if tls is not None:
            cert_file, key_file = self_signed(tls)
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(cert_file, key_file)
            self.ca_file = cert_file

    def start(self) -> "KeepAliveOpenAI":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._http.daemon_threads = True
        if self._ssl is not None:
            self._http.socket = self._ssl.wrap_socket(self._http.socket, server_side=True)
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="keepalive-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is None:
            return
        self._http.shutdown()
        self.close_idle()
        self._http.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._http = self._thread = None

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("KeepAliveOpenAI is not running")
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self._http.server_address[1]}"

    @property
    def open(self) -> int:
        """Connections open on the server's side now."""
        with self._counted:
            return len(self._sockets)

    def close_idle(self, timeout: float = 5.0) -> None:
        """Close every connection from the server's side, and wait until their handlers are gone."""
        with self._counted:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # the client closed it first: it is gone either way
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        with self._counted:
            while self._sockets and time.monotonic() < deadline:
                self._counted.wait(0.05)

    def _opened(self, sock: socket.socket) -> None:
        with self._counted:
            self.connections += 1
            self._sockets.add(sock)

    def _closed(self, sock: socket.socket) -> None:
        with self._counted:
            self._sockets.discard(sock)
            self._counted.notify_all()
