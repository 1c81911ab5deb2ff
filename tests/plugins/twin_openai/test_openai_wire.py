"""HTTP/1.1 framing (twin_openai.wire) on bytes: what the transport reads and writes."""

from __future__ import annotations

import io

import pytest

from twin_openai import wire


def read(raw: bytes, method: bytes = b"POST") -> tuple[wire.Head, bytes]:
    reader = io.BufferedReader(io.BytesIO(raw))
    head = wire.read_head(reader, method)
    return head, b"".join(wire.body(reader, head))


def test_a_request_is_its_line_headers_and_a_blank_line():
    assert wire.request_bytes(b"POST", b"/v1/chat/completions", [(b"Host", b"a"), (b"Content-Length", b"2")]) == (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")


@pytest.mark.parametrize("header", [(b"X-Evil", b"a\r\nInjected: yes"), (b"X\nEvil", b"a"), (b"X:Y", b"a"), (b"", b"a")])
def test_a_header_that_would_split_the_request_is_refused(header):
    with pytest.raises(wire.LocalWireError):
        wire.request_bytes(b"POST", b"/", [header])


def test_a_counted_body_keeps_the_connection():
    head, body = read(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}NEXT")
    assert (head.status, head.reason, body, head.keep_alive) == (200, b"OK", b"{}", True)
    assert head.headers == [(b"Content-Type", b"application/json"), (b"Content-Length", b"2")]


def test_a_chunked_body_with_extensions_and_trailers():
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=x\r\ndata:\r\n2\r\n\n\n\r\n0\r\nTrailer: t\r\n\r\n")
    head, body = read(raw)
    assert (body, head.chunked, head.keep_alive) == (b"data:\n\n", True, True)


def test_interim_responses_are_read_past():
    head, body = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx")
    assert (head.status, body) == (201, b"x")


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 200 OK\r\n\r\nx",                                  # runs to the close
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nx",        # not chunked last: runs to the close
    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",  # both
])
def test_responses_that_end_the_connection(raw):
    head, body = read(raw)
    assert (body, head.keep_alive) == (b"x", False)


def test_no_body_after_head_204_or_304():
    assert read(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1", b"POST")[1] == b""
    assert read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", b"HEAD")[1] == b""


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"SMTP 220 hello\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
])
def test_malformed_responses_are_wire_errors(raw):
    with pytest.raises(wire.WireError):
        read(raw)


def test_an_empty_answer_is_eof():
    with pytest.raises(EOFError):
        read(b"")
