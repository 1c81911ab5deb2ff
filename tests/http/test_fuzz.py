"""schemathesis against a real gunicorn, with the OpenAPI document that gunicorn serves.

Every operation is attacked with schema-valid and schema-violating data (schemathesis'
coverage and fuzzing phases, fixed seed), and every response is checked against the
document. The offline model answers, in a temporary data directory. Two servers:

- ``public``: the default public chat, API keys set (so ``/v1`` needs one; the fuzzer
  sends it) and the rate limit **off**: thousands of chats from one address would
  otherwise all be 429 (documented, but it would hide everything behind it);
- ``private``: ``TWIN_PUBLIC_CHAT=false`` (every path but the probes needs a key) and the
  default rate limit on, so 401 and 429 with ``Retry-After`` are met for real.

Requests are independent (schemathesis' state machines, a separate API, are not run: the
document declares no links). The document's example session holds a stored conversation.
"""

from __future__ import annotations

import tempfile

import pytest
import requests
import schemathesis

from tests.doubles.servers import gunicorn
from twin_server.app import create_app
from twin_server.http.openapi import document_of
from twin_server.http.schemas import EXAMPLE_SESSION_ID

KEY = "fuzz-key-0123456789"
SEED = 17

PUBLIC = {"RATE_LIMIT": "off", "API_KEYS": KEY, "LOG_LEVEL": "WARNING"}
PRIVATE = {"PUBLIC_CHAT": "false", "API_KEYS": KEY, "LOG_LEVEL": "WARNING"}

#: The checks run on every response. A check switched off says why on its line.
CHECKS = {
    "not_a_server_error": {"enabled": True},
    "status_code_conformance": {"enabled": True},
    "content_type_conformance": {"enabled": True},
    "response_schema_conformance": {"enabled": True},
    "response_headers_conformance": {"enabled": True},
    # 413 is a rejection too: an invalid body can be too large before it is invalid.
    "negative_data_rejection": {"enabled": True, "expected-statuses": [400, 401, 404, 405, 413, 415, 429]},
    "unsupported_method": {"enabled": True},
    "positive_data_acceptance": {"enabled": True},
    "missing_required_header": {"enabled": True},
    "allow_header_conformance": {"enabled": True},
    "ignored_auth": {"enabled": True},
}

PER_OPERATION = [
    {
        "include-name": "POST /v1/chat/completions",
        # JSON Schema has no keyword for "the last item": a last message that is not a non-empty
        # user message is valid by the document, and rightly refused (400).
        "checks": {"positive_data_acceptance": {"enabled": False}},
    },
    {
        "include-name": "GET /conversation/{session_id}",
        # `before` is an opaque cursor that only a previous page's `next` makes: a made-up one that fits
        # the pattern is rightly refused (400).
        "checks": {"positive_data_acceptance": {"enabled": False}},
    },
]


def served_document(settings: dict[str, str]) -> dict:
    """The document a server with ``settings`` serves (its fixture checks that it is this one)."""
    with tempfile.TemporaryDirectory() as data:
        return document_of(create_app({**settings, "DATA_DIR": data}, warm_up=False))


def fuzzer(document: dict, max_examples: int) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "auth": {"openapi": {"ApiKey": {"bearer": KEY}, "ApiKeyHeader": {"api_key": KEY}}},
            "generation": {"mode": "all", "max-examples": max_examples, "database": "none"},
            "checks": CHECKS,
            "operations": PER_OPERATION,
        }
    )
    # schemathesis.pytest.from_fixture would load the document from the running server, but its lazy
    # loader sets a private attribute of pytest's nodes that pytest 9 no longer has: the document is
    # built in-process with the server's settings instead, and each server is checked to serve it.
    return schemathesis.openapi.from_dict(document, config=config)


PUBLIC_DOCUMENT = served_document(PUBLIC)
PRIVATE_DOCUMENT = served_document(PRIVATE)
public_api = fuzzer(PUBLIC_DOCUMENT, max_examples=250)
private_api = fuzzer(PRIVATE_DOCUMENT, max_examples=40)


def serve(tmp_path_factory, settings: dict[str, str], document: dict):
    data = tmp_path_factory.mktemp("fuzz") / "data"
    env = {f"TWIN_{name}": value for name, value in {**settings, "DATA_DIR": str(data)}.items()}
    with gunicorn(env, workers=2, threads=8) as url:
        headers = {"X-API-Key": KEY}
        assert requests.get(url + "/openapi.json", headers=headers, timeout=10).json() == document
        # The document's example session holds a conversation, so GET /conversation/{example} answers
        # stored messages (random ids find empty conversations only).
        turn = {"message": "Where do you live?", "session_id": EXAMPLE_SESSION_ID}
        assert requests.post(url + "/chat", json=turn, headers=headers, timeout=10).status_code == 200
        yield url


@pytest.fixture(scope="module")
def public_server(tmp_path_factory):
    yield from serve(tmp_path_factory, PUBLIC, PUBLIC_DOCUMENT)


@pytest.fixture(scope="module")
def private_server(tmp_path_factory):
    yield from serve(tmp_path_factory, PRIVATE, PRIVATE_DOCUMENT)


@public_api.parametrize()
def test_the_public_api_conforms_to_its_document(case, public_server):
    case.call_and_validate(base_url=public_server)


@private_api.parametrize()
def test_the_private_api_conforms_to_its_document(case, private_server):
    case.call_and_validate(base_url=private_server)


def test_the_documents_differ_where_the_settings_do():
    chat = "/chat"
    assert "security" not in PUBLIC_DOCUMENT["paths"][chat]["post"]
    assert PRIVATE_DOCUMENT["paths"][chat]["post"]["security"] == [{"ApiKey": []}, {"ApiKeyHeader": []}]
    assert "401" in PRIVATE_DOCUMENT["paths"][chat]["post"]["responses"]
    assert "security" in PUBLIC_DOCUMENT["paths"]["/v1/models"]["get"]
    assert "security" not in PRIVATE_DOCUMENT["paths"]["/health"]["get"]
