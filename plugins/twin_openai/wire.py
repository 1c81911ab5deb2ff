"""HTTP/1.1 framing for ``twin_openai.transport``: a request out, a response head and body in (RFC 9112).

Only what a client of one JSON API needs: no pipelining, no ``Expect``, no
upgrade. Everything malformed is a ``WireError``; the transport turns it into
httpx's ``RemoteProtocolError`` (or ``LocalProtocolError`` for our own request).
The stdlib's ``http.client`` does the same job, but at ~90 us of CPU per call
(its header parsing goes through the ``email`` package) against ~10 us here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

#: Limits as http.client's: a longer line or more headers than this is not a server we trust.
MAX_LINE = 65536
MAX_HEADERS = 100
#: Bytes asked of the socket per read of a body; a stream yields whatever has arrived.
READ_SIZE = 65536
NO_BODY_STATUSES = frozenset({204, 304})
_HEX = b"0123456789abcdefABCDEF"


class WireError(Exception):
    """Bytes on the wire that are not HTTP/1.1 as we speak it."""


class LocalWireError(WireError):
    """A request we must not send (a header that would split the request)."""


def request_bytes(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request line and headers, ending in the blank line."""
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if b"\r" in name or b"\n" in name or b":" in name or b"\r" in value or b"\n" in value or not name:
            raise LocalWireError(f"illegal header {name!r}")
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class Head:
    """A response's status line and headers, and how its body is framed."""

    __slots__ = ("status", "reason", "headers", "length", "chunked", "keep_alive")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], method: bytes,
                 version: bytes) -> None:
        self.status, self.reason, self.headers = status, reason, headers
        connection, encoding, lengths = b"", b"", []
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                lengths.append(value)
            elif lowered == b"transfer-encoding":
                encoding = encoding + b"," + value if encoding else value
            elif lowered == b"connection":
                connection = connection + b"," + value if connection else value
        tokens = {token.strip().lower() for token in connection.split(b",")}
        self.keep_alive = version == b"HTTP/1.1" and b"close" not in tokens
        self.chunked = False
        self.length: int | None = None
        if method == b"HEAD" or status in NO_BODY_STATUSES:
            self.length = 0
        elif encoding:
            codings = [token.strip().lower() for token in encoding.split(b",")]
            if lengths:
                self.keep_alive = False  # both framings: a smuggling attempt or a broken proxy (RFC 9112 6.3)
            if codings[-1] != b"chunked":
                self.keep_alive = False  # delimited by the close, as RFC 9112 6.3 says
            else:
                self.chunked = True
        elif lengths:
            values = {value.strip() for value in b",".join(lengths).split(b",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise WireError(f"bad Content-Length {lengths!r}")
            self.length = int(values.pop())
        else:
            self.keep_alive = False  # the body runs to the close


def read_head(reader: BinaryIO, method: bytes) -> Head:
    """The final response's head; 1xx interim responses are read past."""
    while True:
        line = _line(reader)
        if not line:
            raise EOFError("the server closed the connection without answering")
        version, _, rest = line.rstrip(b"\r\n").partition(b" ")
        code, _, reason = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise WireError(f"not an HTTP/1.x status line: {line[:80]!r}")
        headers = _headers(reader)
        status = int(code)
        if status >= 200:
            return Head(status, reason, headers, method, version)
        if status == 101:
            raise WireError("the server switched protocols")


def body(reader: BinaryIO, head: Head) -> Iterator[bytes]:
    """The body's bytes as they arrive (chunked, Content-Length or to the close), decoded of its framing."""
    if head.chunked:
        yield from _chunked(reader)
    elif head.length is not None:
        yield from _counted(reader, head.length)
    else:
        while data := reader.read1(READ_SIZE):
            yield data


def _counted(reader: BinaryIO, left: int) -> Iterator[bytes]:
    while left:
        data = reader.read1(min(left, READ_SIZE))
        if not data:
            raise WireError(f"the server closed the connection {left} bytes short of the body")
        left -= len(data)
        yield data


def _chunked(reader: BinaryIO) -> Iterator[bytes]:
    while True:
        line = _line(reader)
        size = line.split(b";", 1)[0].strip()
        if not size or size.strip(_HEX) or not line.endswith(b"\n"):
            raise WireError(f"bad chunk size line {line[:80]!r}")
        left = int(size, 16)
        if left == 0:
            _headers(reader)  # the trailer section, ignored
            return
        yield from _counted(reader, left)
        if _line(reader) not in (b"\r\n", b"\n"):
            raise WireError("a chunk did not end with CRLF")


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise WireError("a line longer than 64 KiB")
    return line


def _headers(reader: BinaryIO) -> list[tuple[bytes, bytes]]:
    headers = []
    while True:
        line = _line(reader)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line.endswith(b"\n"):
            raise WireError("the server closed the connection inside the response head")
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[0] in b" \t":
            raise WireError(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip()))
        if len(headers) > MAX_HEADERS:
            raise WireError(f"more than {MAX_HEADERS} headers")
