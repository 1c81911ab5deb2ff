"""Every OpenAI failure becomes the right core error, read from real HTTP answers through the SDK."""

from __future__ import annotations

import email.utils
import logging
import traceback

import openai
import pytest

import twin_openai
from tests.doubles.fake_openai import FakeOpenAI
from tests.doubles.servers import free_port
from twin_openai.errors import CredentialsRejected, QuotaExhausted
from twin_openai.translate import HISTORY_TOO_LONG, retry_after_seconds
from twin_server import BackendContext
from twin_server.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    HistoryTooLong,
    RateLimited,
    TransientError,
)
from twin_server.types import Message, Persona, Prompt

KEY = "sk-test-errors-0123456789"
PROMPT = Prompt(system="You are Test.", messages=(Message("user", "hi"),), persona=Persona(full_name="Test"), timeout=30)


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def backend_for(base_url: str):
    factories = {}
    twin_openai.register_llm_backends(register=factories.__setitem__)
    context = BackendContext(config={"OPENAI_BASE_URL": base_url}, secret={"OPENAI_API_KEY": KEY}.__getitem__)
    return factories["openai"](context)


def failure(server: FakeOpenAI, *, stream: bool = False) -> BaseException:
    backend = backend_for(server.base_url)
    with pytest.raises(Exception) as caught:
        if stream:
            list(backend.stream(PROMPT))
        else:
            backend.complete(PROMPT)
    assert len(server.requests) == 1
    return caught.value


MAPPINGS = [
    # (status, code, headers, the core error it must become)
    (429, "rate_limit_exceeded", {}, RateLimited),
    (429, "insufficient_quota", {}, QuotaExhausted),
    (401, "invalid_api_key", {}, CredentialsRejected),
    (403, "unsupported_country_region_territory", {}, CredentialsRejected),
    (400, "context_length_exceeded", {}, HistoryTooLong),
    (400, "invalid_value", {}, BackendError),
    (404, "model_not_found", {}, BackendError),
    (422, None, {}, BackendError),
    (408, None, {}, BackendTimeout),
    (409, None, {}, BackendUnavailable),
    (500, None, {}, BackendUnavailable),
    (503, None, {"retry-after": "3"}, RateLimited),
    (500, None, {"x-should-retry": "false"}, BackendError),
    (429, "rate_limit_exceeded", {"x-should-retry": "false"}, BackendError),
    (400, "invalid_value", {"x-should-retry": "true"}, BackendUnavailable),
    (401, "invalid_api_key", {"x-should-retry": "true", "retry-after": "2"}, RateLimited),
]


@pytest.mark.parametrize("status, code, headers, expected", MAPPINGS)
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_status_errors_map_to_core_errors(server, status, code, headers, expected, stream):
    server.error(status, "scripted failure", code=code, headers=headers)
    error = failure(server, stream=stream)
    assert type(error) is expected
    assert isinstance(error.__cause__, openai.APIStatusError)
    assert error.__cause__.status_code == status


@pytest.mark.parametrize("expected, transient", [(QuotaExhausted, False), (CredentialsRejected, False),
                                                 (HistoryTooLong, False), (RateLimited, True)])
def test_only_what_retrying_can_fix_is_transient(expected, transient):
    assert issubclass(expected, TransientError) is transient


def test_a_context_overflow_named_only_in_the_message_is_history_too_long(server):
    server.error(400, "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.")
    error = failure(server)
    assert type(error) is HistoryTooLong and str(error) == HISTORY_TOO_LONG


@pytest.mark.parametrize(
    "headers, seconds",
    [({"retry-after-ms": "250"}, 0.25), ({"retry-after": "7"}, 7.0), ({"retry-after": "1.5"}, 1.5),
     ({"retry-after-ms": "100", "retry-after": "9"}, 0.1), ({}, None)],
)
def test_rate_limits_carry_the_servers_delay(server, headers, seconds):
    server.error(429, "slow down", code="rate_limit_exceeded", headers=headers)
    error = failure(server)
    assert isinstance(error, RateLimited) and error.retry_after == seconds


def test_an_html_gateway_error_is_unavailable(server):
    server.respond(502, "<html><body>Bad gateway</body></html>", content_type="text/html")
    assert type(failure(server)) is BackendUnavailable


def test_a_refused_connection_is_unavailable():
    with pytest.raises(BackendUnavailable) as caught:
        backend_for(f"http://127.0.0.1:{free_port()}/v1").complete(PROMPT)
    assert type(caught.value) is BackendUnavailable
    assert type(caught.value.__cause__) is openai.APIConnectionError


def test_quota_exhaustion_is_logged_loudly(server, caplog):
    server.error(429, "You exceeded your current quota", code="insufficient_quota")
    with caplog.at_level(logging.ERROR, logger="twin_openai"):
        failure(server)
    assert "QUOTA EXHAUSTED" in caplog.text and "retrying cannot help" in caplog.text


def test_rejected_credentials_are_logged_as_configuration_without_the_key(server, caplog):
    server.error(401, f"Incorrect API key provided: {KEY}.", code="invalid_api_key")
    with caplog.at_level(logging.DEBUG):
        error = failure(server)
    assert "configuration problem" in caplog.text and "OPENAI_API_KEY" in caplog.text
    whole_chain = "".join(traceback.format_exception(error))
    assert "Incorrect API key provided" in whole_chain  # the vendor's words are kept ...
    assert KEY not in whole_chain and KEY not in caplog.text  # ... without the key


class TestRetryAfterHeader:
    NOW = 1_700_000_000.0

    @pytest.mark.parametrize(
        "headers, seconds",
        [
            ({"retry-after-ms": "1500"}, 1.5),
            ({"retry-after": "12"}, 12.0),
            ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
            ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
            ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),
            ({"retry-after": "-5"}, None),
            ({"retry-after": "inf"}, None),
            ({"retry-after": "tomorrow-ish"}, None),
            ({}, None),
        ],
    )
    def test_parsing(self, headers, seconds):
        assert retry_after_seconds(headers, now=lambda: self.NOW) == seconds
