"""The cheaper call path keeps the wire the SDK's: same JSON, same per-call headers, fewer static ones."""

from __future__ import annotations

import json

import pytest

from tests.doubles.fake_openai import FakeOpenAI
from tests.plugins.twin_openai.test_openai_backend import build, prompt
from twin_openai.backend import PLATFORM_HEADERS


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def test_the_body_is_compact_utf8_json_and_the_platform_headers_stay_home(server):
    backend = build(server)
    backend.complete(prompt(system="Je suis Zoë — “quoted”."))
    list(backend.stream(prompt()))
    for request in server.requests:
        assert request.path == "/v1/chat/completions"
        assert request.headers["content-type"] == "application/json"
        body = request.body.decode("utf-8")
        assert body == json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))
        assert not {name.lower() for name in PLATFORM_HEADERS} & set(request.headers)
        assert request.headers["x-stainless-retry-count"] == "0" and "x-stainless-read-timeout" in request.headers
    assert "Zoë — “quoted”" in server.requests[0].body.decode("utf-8")
    assert json.loads(server.requests[1].body)["stream"] is True


def test_a_base_url_with_a_path_prefix_is_kept(server):
    backend = build(server, OPENAI_BASE_URL=server.url + "/v1/")
    assert backend.complete(prompt()) and server.requests[0].path == "/v1/chat/completions"
