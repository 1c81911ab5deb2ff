"""The Secrets Manager provider against moto's server (and botocore's Stubber for what moto can't say)."""

import json
import logging

import pytest
from botocore.stub import Stubber

from tests.doubles.moto_server import aws, moto_server, record_sends  # noqa: F401  (fixtures)
from twin_aws.secrets import SecretsManagerProvider
from twin_server import hookimpl
from twin_server.app import create_app
from twin_server.errors import ConfigurationError

VALUE = "sk-test-0123456789-very-secret"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class KeyedLLM:
    """Like a real API client's backend: reads its key through the secrets provider on every call."""

    def __init__(self, context):
        self.context = context

    def complete(self, prompt):
        return f"my key has {len(self.context.secret('API_KEY'))} characters"

    def stream(self, prompt):
        yield self.complete(prompt)


class KeyedPlugin:
    __name__ = "keyed-llm-test-plugin"

    @hookimpl
    def register_llm_backends(self, register):
        register("keyed", KeyedLLM)


@pytest.fixture
def app(aws, tmp_path, clock):
    return create_app(
        {"SECRETS": "aws", "LLM": "keyed", "DATA_DIR": str(tmp_path)},
        plugins=[KeyedPlugin()],
        retry_options={"clock": clock, "sleep": clock.sleep},
    )


def chat(app, session="secret-session-1"):
    return app.test_client().post("/chat", json={"message": "hello", "session_id": session})


def provider(clock=None, prefix="twin/", ttl=300.0):
    built = SecretsManagerProvider.from_config({})
    return SecretsManagerProvider(built.client, prefix, ttl, clock=clock or Clock())


def test_a_plain_secret(aws):
    aws.secretsmanager.create_secret(Name="twin/API_KEY", SecretString=VALUE)
    assert provider().get("API_KEY") == VALUE


def test_a_json_secret_gives_the_key_named_like_the_secret(aws):
    aws.secretsmanager.create_secret(Name="twin/API_KEY", SecretString=json.dumps({"API_KEY": VALUE, "OTHER": "x"}))
    assert provider().get("API_KEY") == VALUE


def test_a_json_secret_without_the_key_says_so_without_its_values(aws):
    aws.secretsmanager.create_secret(Name="twin/API_KEY", SecretString=json.dumps({"OTHER": VALUE}))
    with pytest.raises(ConfigurationError, match="without a string key 'API_KEY'") as raised:
        provider().get("API_KEY")
    assert VALUE not in str(raised.value)


@pytest.mark.parametrize("prefix, secret_id", [("", "API_KEY"), ("prod", "prod/API_KEY"), ("prod/", "prod/API_KEY")])
def test_the_prefix_slash_is_optional(aws, prefix, secret_id):
    aws.secretsmanager.create_secret(Name=secret_id, SecretString=VALUE)
    assert provider(prefix=prefix).get("API_KEY") == VALUE


def test_one_fetch_serves_many_requests(aws, app):
    aws.secretsmanager.create_secret(Name="twin/API_KEY", SecretString=VALUE)
    fetches = record_sends(app.extensions["twin_server"].backends.secrets.client, "GetSecretValue")
    for i in range(5):
        response = chat(app, f"secret-session-{i}")
        assert response.status_code == 200
        assert response.get_json()["response"] == f"my key has {len(VALUE)} characters"
    assert fetches == ["GetSecretValue"]


def test_a_rotated_secret_is_read_again_after_the_ttl(aws):
    aws.secretsmanager.create_secret(Name="twin/API_KEY", SecretString="first-value")
    clock = Clock()
    secrets = provider(clock, ttl=10)
    assert secrets.get("API_KEY") == "first-value"
    aws.secretsmanager.put_secret_value(SecretId="twin/API_KEY", SecretString="second-value")
    clock.now = 9.9
    assert secrets.get("API_KEY") == "first-value"
    clock.now = 10
    assert secrets.get("API_KEY") == "second-value"


def test_a_failed_refresh_keeps_the_value_held(aws, caplog):
    aws.secretsmanager.create_secret(Name="twin/API_KEY", SecretString=VALUE)
    clock = Clock()
    secrets = provider(clock, ttl=10)
    secrets.get("API_KEY")
    clock.now = 11
    with Stubber(secrets.client) as stub:
        stub.add_client_error("get_secret_value", "InternalServiceError", "boom", 500)
        assert secrets.get("API_KEY") == VALUE
        clock.now = 15
        assert secrets.get("API_KEY") == VALUE  # no second call: the Stubber would refuse it
        stub.assert_no_pending_responses()
    assert "keeping the value already held" in caplog.text


def test_moto_missing_and_deleted_secrets_are_configuration_errors(aws):
    with pytest.raises(ConfigurationError, match="twin/API_KEY does not exist"):
        provider().get("API_KEY")
    aws.secretsmanager.create_secret(Name="twin/GONE", SecretString=VALUE)
    aws.secretsmanager.delete_secret(SecretId="twin/GONE", RecoveryWindowInDays=7)
    with pytest.raises(ConfigurationError, match="scheduled for deletion"):
        provider().get("GONE")


@pytest.mark.parametrize(
    "code, aws_status, status, title, attempts",
    [
        ("ResourceNotFoundException", 400, 500, "Server misconfigured", 1),
        ("InvalidRequestException", 400, 500, "Server misconfigured", 1),
        ("InvalidParameterException", 400, 500, "Server misconfigured", 1),
        ("DecryptionFailure", 400, 500, "Server misconfigured", 1),
        ("AccessDeniedException", 400, 500, "Server misconfigured", 1),
        ("InternalServiceError", 500, 503, "Service unavailable", 3),
    ],
)
def test_each_error_through_the_api(app, code, aws_status, status, title, attempts):
    client = app.extensions["twin_server"].backends.secrets.client
    with Stubber(client) as stub:
        for _ in range(attempts):
            stub.add_client_error("get_secret_value", code, "said by AWS", aws_status)
        response = chat(app)
        stub.assert_no_pending_responses()
    assert response.status_code == status
    assert response.get_json()["title"] == title  # the core error, not a botocore one leaking through
    assert response.get_json()["operation"] == "secrets"
    assert "said by AWS" not in response.get_data(as_text=True)


def test_no_secret_value_reaches_a_log_or_a_response(aws, app, caplog):
    aws.secretsmanager.create_secret(Name="twin/API_KEY", SecretString=json.dumps({"API_KEY": VALUE}))
    aws.secretsmanager.create_secret(Name="twin/WRONG", SecretString=json.dumps({"NOT_IT": VALUE}))
    caplog.set_level(logging.DEBUG)  # after arranging: the test's own create_secret calls log the value
    response = chat(app)
    assert response.status_code == 200 and VALUE not in response.get_data(as_text=True)
    with pytest.raises(ConfigurationError):
        app.extensions["twin_server"].backends.secrets.get("WRONG")
    bodies = [r for r in caplog.records if r.name == "botocore.parsers" and r.msg.startswith("Response body")]
    assert bodies, "botocore's DEBUG dump of the response was not captured, so this test would prove nothing"
    assert VALUE not in caplog.text
    assert all(VALUE not in repr(r.args) and VALUE not in str(r.msg) for r in caplog.records)
    assert VALUE not in repr(app.extensions["twin_server"].backends.secrets.backend)
