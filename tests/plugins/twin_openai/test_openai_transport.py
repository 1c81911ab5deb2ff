"""The backend's own httpx transport, through the real SDK over real sockets (tests/doubles/keepalive_openai.py)."""

from __future__ import annotations

import gc
import logging
import socket
import ssl
import threading
import time

import httpx2 as httpx
import openai
import pytest

from tests.doubles.fake_openai import FakeOpenAI
from tests.doubles.keepalive_openai import KeepAliveOpenAI
from tests.doubles.servers import free_port
from tests.plugins.twin_openai.test_openai_backend import KEY, build, prompt
from twin_openai.transport import KEEPALIVE_SECONDS, StdlibTransport
from twin_server.errors import BackendTimeout, BackendUnavailable


@pytest.fixture
def server():
    with KeepAliveOpenAI() as fake:
        yield fake


def sdk(server: FakeOpenAI, transport: StdlibTransport) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0,
                         http_client=openai.DefaultHttpxClient(transport=transport))


def ask(client: openai.OpenAI, timeout: float = 10.0) -> str:
    reply = client.post("/chat/completions", body={"model": "m", "messages": []}, cast_to=object,
                        options={"timeout": timeout})
    return reply["choices"][0]["message"]["content"]


def causes(exc: BaseException) -> list[BaseException]:
    chain = []
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__
    return chain


def test_calls_and_streams_reuse_one_connection(server):
    backend = build(server)
    server.reply("One.")
    server.stream(["Two ", "three."])
    server.reply("Four.")
    assert backend.complete(prompt()) == "One."
    assert list(backend.stream(prompt())) == ["Two ", "three."]
    assert backend.complete(prompt()) == "Four."
    assert server.connections == 1 and len(server.requests) == 3


def test_a_connection_the_server_closed_while_idle_is_replaced_not_reused(server):
    backend = build(server)
    assert backend.complete(prompt())
    server.close_idle()
    assert backend.complete(prompt()) == "Hello from the fake model."
    assert server.connections == 2


def test_a_connection_idle_past_the_keepalive_expiry_is_replaced(server):
    now = [100.0]
    transport = StdlibTransport(server.base_url, clock=lambda: now[0])
    client = sdk(server, transport)
    ask(client)
    now[0] += KEEPALIVE_SECONDS - 0.1
    ask(client)
    assert server.connections == 1
    now[0] += KEEPALIVE_SECONDS + 0.1
    ask(client)
    assert server.connections == 2 and transport.open_connections == 1


def test_a_stream_is_delivered_as_it_arrives_then_its_connection_reused(server):
    backend = build(server)
    held = threading.Event()
    server.stream(["I build ", "small ", "boats."], hold=held)
    pieces = backend.stream(prompt())
    started = time.monotonic()
    assert next(pieces) == "I build "
    assert time.monotonic() - started < 5  # the server holds the rest back for 10 s: nothing was buffered
    held.set()
    assert list(pieces) == ["small ", "boats."]
    assert backend.complete(prompt()) and server.connections == 1


def test_a_request_while_a_stream_is_open_on_the_same_thread_gets_its_own_connection(server):
    transport = StdlibTransport(server.base_url)
    client = sdk(server, transport)
    ask(client)  # the thread's slot holds an idle connection, which the stream then takes
    server.stream(["a ", "b."])
    with client.post("/chat/completions", body={"model": "m", "messages": [], "stream": True},
                     cast_to=object, stream=True, stream_cls=openai.Stream[object]) as chunks:
        first = next(iter(chunks))
        assert ask(client) == "Hello from the fake model."
        rest = list(chunks)
    assert first["choices"][0]["delta"] and rest
    assert server.connections == 2 and transport.open_connections == 1  # one kept idle, the other closed
    ask(client)
    assert server.connections == 2


def test_eight_threads_share_one_transport_each_with_its_own_connection(server):
    transport = StdlibTransport(server.base_url)
    client = sdk(server, transport)
    replies, barrier = [], threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        replies.extend(ask(client) for _ in range(15))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert replies == ["Hello from the fake model."] * 120
    assert server.connections <= 8 and transport.open_connections <= 8


def test_a_thread_that_ends_takes_its_idle_connection_with_it(server):
    transport = StdlibTransport(server.base_url)
    client = sdk(server, transport)
    sockets = []

    def work() -> None:
        ask(client)
        sockets.extend(connection.sock for connection in transport._open)

    for _ in range(5):  # one after the other: each thread's connection idles in its slot until the thread ends
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(30)
    gc.collect()
    assert server.connections == 5 and len(sockets) == 5
    assert transport.open_connections == 0
    assert all(sock.fileno() == -1 for sock in sockets)  # closed, not left to the peer's timeout


def test_a_connect_timeout_is_a_backend_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())  # fills the backlog: the next SYN goes unanswered
    try:
        fake = type("Fake", (), {"base_url": f"http://127.0.0.1:{listener.getsockname()[1]}/v1"})()
        with pytest.raises(BackendTimeout) as caught:
            build(fake).complete(prompt(timeout=0.3))
    finally:
        filler.close()
        listener.close()
    assert isinstance(caught.value.__cause__, openai.APITimeoutError)
    assert any(isinstance(exc, httpx.ConnectTimeout) for exc in causes(caught.value))


def test_a_refused_connection_is_backend_unavailable():
    fake = type("Fake", (), {"base_url": f"http://127.0.0.1:{free_port()}/v1"})()
    with pytest.raises(BackendUnavailable) as caught:
        build(fake).complete(prompt())
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)
    assert any(isinstance(exc, httpx.ConnectError) for exc in causes(caught.value))


def test_read_timeouts_before_and_inside_a_stream_drop_the_connection(server):
    backend = build(server)
    server.reply("late", delay=1.0)
    with pytest.raises(BackendTimeout) as caught:
        backend.complete(prompt(timeout=0.2))
    assert any(isinstance(exc, httpx.ReadTimeout) for exc in causes(caught.value))
    held = threading.Event()
    server.stream(["first ", "never"], hold=held)
    pieces = backend.stream(prompt(timeout=0.3))
    assert next(pieces) == "first "
    with pytest.raises(BackendTimeout):
        list(pieces)
    server.reply("On time.")
    try:  # the server is still holding the stream: a reused connection would never answer
        assert backend.complete(prompt(timeout=2.0)) == "On time."
    finally:
        held.set()
    assert server.connections == 3


def test_a_server_that_closes_mid_body_is_backend_unavailable():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\"")
        connection.close()

    thread = threading.Thread(target=answer)
    thread.start()
    fake = type("Fake", (), {"base_url": f"http://127.0.0.1:{listener.getsockname()[1]}/v1"})()
    try:
        with pytest.raises(BackendUnavailable) as caught:
            build(fake).complete(prompt())
    finally:
        thread.join(5)
        listener.close()
    assert any(isinstance(exc, httpx.RemoteProtocolError) for exc in causes(caught.value))


def test_https_verifies_the_certificate_with_the_default_context(tmp_path, monkeypatch):
    with KeepAliveOpenAI(tls=tmp_path) as server:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        with pytest.raises(BackendUnavailable) as caught:
            build(server).complete(prompt())
        assert any(isinstance(exc, ssl.SSLCertVerificationError) for exc in causes(caught.value))
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        backend = build(server)
        assert backend.complete(prompt()) == backend.complete(prompt()) == "Hello from the fake model."
        assert server.connections == 1  # the refused handshake never became a connection; then one, kept alive


def test_a_proxy_in_the_environment_hands_the_call_to_httpx(monkeypatch, caplog):
    with FakeOpenAI() as proxy:
        proxy.reply("Through the proxy.")
        nowhere = type("Fake", (), {"base_url": f"http://127.0.0.1:{free_port()}/v1"})()
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with caplog.at_level(logging.INFO, logger="twin_openai"):
            backend = build(nowhere)
        assert backend.complete(prompt()) == "Through the proxy."
        assert [request.path for request in proxy.requests] == ["/v1/chat/completions"]
        assert [r.levelname for r in caplog.records if "proxy" in r.getMessage()] == ["INFO"]


def test_a_host_in_no_proxy_keeps_our_transport(server, monkeypatch, caplog):
    with FakeOpenAI() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with caplog.at_level(logging.INFO, logger="twin_openai"):
            backend = build(server)
            backend.complete(prompt())
            backend.complete(prompt())
        assert not proxy.requests and server.connections == 1
        assert not [r for r in caplog.records if "proxy" in r.getMessage()]


def test_a_request_for_another_origin_goes_through_httpx(server):
    with FakeOpenAI() as other:
        other.reply("Elsewhere.")
        client = httpx.Client(transport=StdlibTransport(server.base_url))
        reply = client.post(other.base_url + "/chat/completions", json={"model": "m", "messages": []})
        assert reply.json()["choices"][0]["message"]["content"] == "Elsewhere."
        assert len(other.requests) == 1 and server.connections == 0


def test_the_operator_can_choose_httpxs_own_transport(server):
    ours, theirs = build(server), build(server, OPENAI_TRANSPORT="httpx")
    assert isinstance(ours.client._client._transport, StdlibTransport)
    assert not isinstance(theirs.client._client._transport, StdlibTransport)
    assert theirs.complete(prompt()) == ours.complete(prompt()) == "Hello from the fake model."


def test_an_unknown_transport_is_a_startup_problem(server):
    from twin_server.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="TWIN_OPENAI_TRANSPORT must be builtin or httpx, not 'curl'"):
        build(server, OPENAI_TRANSPORT="curl")
