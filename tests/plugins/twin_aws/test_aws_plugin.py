"""The AWS plugin as a whole: lazy boto3, startup checks, client settings, error translation."""

import socket
import subprocess
import sys

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from tests.doubles.moto_server import aws, moto_server, use_test_credentials  # noqa: F401  (fixtures)
from tests.doubles.servers import ROOT
from twin_aws.clients import join_key, translate
from twin_server import errors
from twin_server.app import create_app
from twin_server.errors import StartupError

ALL_AWS = {"STORAGE": "s3", "PERSONA": "s3", "SECRETS": "aws", "LLM": "bedrock"}


def test_importing_the_plugin_imports_no_boto3():
    code = (
        "import sys, twin_aws\n"
        "from twin_server.plugin_manager import get_plugin_manager\n"
        "get_plugin_manager()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_without_boto3_every_aws_backend_says_how_to_install_it(monkeypatch):
    use_test_credentials(monkeypatch)
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(StartupError) as raised:
        create_app({**ALL_AWS, "S3_BUCKET": "b", "BEDROCK_MODEL_ID": "m"})
    problems = raised.value.problems
    assert len(problems) == 4
    assert all("install twin-server[aws]" in p for p in problems)
    assert "install twin-server[aws]" in str(raised.value)


def test_missing_settings_are_named_at_startup(monkeypatch):
    use_test_credentials(monkeypatch)
    with pytest.raises(StartupError) as raised:
        create_app(ALL_AWS)
    text = str(raised.value)
    for setting in ("TWIN_S3_BUCKET", "TWIN_PERSONA_S3_BUCKET", "TWIN_BEDROCK_MODEL_ID"):
        assert setting in text


@pytest.mark.parametrize("key, value", [
    ("S3_CHUNK_MESSAGES", 0), ("S3_ADDRESSING_STYLE", "sideways"), ("PERSONA_S3_TTL", -1),
    ("AWS_SECRET_TTL", "soon"), ("STORAGE_TIMEOUT", "fast"),
])
def test_bad_settings_are_named_at_startup(monkeypatch, key, value):
    use_test_credentials(monkeypatch)
    with pytest.raises(StartupError, match=f"TWIN_{key}"):
        create_app({**ALL_AWS, "S3_BUCKET": "b", "BEDROCK_MODEL_ID": "m", key: value})


def test_clients_leave_retries_to_the_core_and_take_their_timeouts_from_the_deadlines(aws):
    app = create_app({
        **ALL_AWS, "S3_BUCKET": aws.bucket(), "BEDROCK_MODEL_ID": "m",
        "STORAGE_TIMEOUT": 2.5, "PERSONA_TIMEOUT": 1.5, "SECRETS_TIMEOUT": 3, "LLM_TIMEOUT": 45,
    })
    backends = app.extensions["twin_server"].backends
    expected = {"storage": (2.5, 2.5), "persona": (1.5, 1.5), "secrets": (3, 3), "llm": (5, 45)}
    for kind, (connect, read) in expected.items():
        config = getattr(backends, kind).client.meta.config
        assert config.retries["total_max_attempts"] == 1
        assert (config.connect_timeout, config.read_timeout) == (connect, read)
    clients = [getattr(backends, kind).client for kind in expected]
    assert len({id(c) for c in clients}) == 4  # one client per backend, kept for the app's life


def test_the_per_service_endpoint_variable_is_honoured(aws, monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed.getsockname()[1]}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.url)
    app = create_app({"STORAGE": "s3", "S3_BUCKET": aws.bucket()})
    client = app.test_client()
    assert client.post("/chat", json={"message": "hi", "session_id": "endpoint-01"}).get_json()["history_saved"]
    assert len(client.get("/conversation/endpoint-01").get_json()["messages"]) == 2


@pytest.mark.parametrize("prefix, parts, key", [
    ("", ("a",), "a"), ("p", ("a",), "p/a"), ("p/", ("a",), "p/a"), ("p//", ("a", "b"), "p/a/b"), ("p", ("",), "p/"),
])
def test_keys_are_joined_with_exactly_one_slash(prefix, parts, key):
    assert join_key(prefix, *parts) == key


def client_error(code, status, headers=None):
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}},
        "Op",
    )


@pytest.mark.parametrize("exc, expected", [
    (client_error("SlowDown", 503), errors.RateLimited),
    (client_error("ThrottlingException", 400), errors.RateLimited),
    (client_error("TooManyRequests", 429), errors.RateLimited),
    (client_error("ModelNotReadyException", 429), errors.BackendUnavailable),
    (client_error("InternalError", 500), errors.BackendUnavailable),
    (client_error("Whatever", 502), errors.BackendUnavailable),
    (client_error("RequestTimeout", 400), errors.BackendTimeout),
    (client_error("ModelTimeoutException", 408), errors.BackendTimeout),
    (client_error("AccessDenied", 403), errors.ConfigurationError),
    (client_error("InvalidAccessKeyId", 403), errors.ConfigurationError),
    (client_error("UnrecognizedClientException", 403), errors.ConfigurationError),
    (client_error("NoSuchBucket", 404), errors.ConfigurationError),
    (client_error("InvalidArgument", 400), errors.BackendError),
    (ReadTimeoutError(endpoint_url="http://x"), errors.BackendTimeout),
    (ConnectTimeoutError(endpoint_url="http://x"), errors.BackendUnavailable),
    (EndpointConnectionError(endpoint_url="http://x"), errors.BackendUnavailable),
    (NoCredentialsError(), errors.ConfigurationError),
])
def test_botocore_errors_become_the_most_specific_core_error(exc, expected):
    assert type(translate(exc, "test")) is expected


def test_retry_after_is_kept_when_aws_sends_it():
    error = translate(client_error("SlowDown", 503, {"retry-after": "7"}), "test")
    assert isinstance(error, errors.RateLimited) and error.retry_after == 7
