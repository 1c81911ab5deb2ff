"""The environment secrets provider."""

from __future__ import annotations

import pytest

import twin_local
from twin_local.secrets import EnvSecrets
from twin_server import BackendContext, SecretsProvider
from twin_server.backends.registry import check_protocol
from twin_server.errors import ConfigurationError

NAME = "TWIN_TEST_SECRET_XYZ"


def test_reads_the_variable_of_the_same_name(monkeypatch):
    monkeypatch.setenv(NAME, "s3cr3t-value")
    assert EnvSecrets().get(NAME) == "s3cr3t-value"


def test_reads_the_live_environment(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)
    secrets = EnvSecrets()
    with pytest.raises(ConfigurationError):
        secrets.get(NAME)
    monkeypatch.setenv(NAME, "later")
    assert secrets.get(NAME) == "later"


def test_missing_secret_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)
    with pytest.raises(ConfigurationError) as info:
        EnvSecrets().get(NAME)
    assert str(info.value) == (
        f"secret {NAME} is not set: export {NAME}=... or choose another secrets provider with TWIN_SECRETS"
    )


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_empty_secret_is_refused(monkeypatch, value):
    monkeypatch.setenv(NAME, value)
    with pytest.raises(ConfigurationError, match=f"secret {NAME} is empty: export {NAME}=..."):
        EnvSecrets().get(NAME)


def test_value_is_never_in_a_message_or_repr(monkeypatch):
    monkeypatch.setenv(NAME, "s3cr3t-value")
    secrets = EnvSecrets()
    assert "s3cr3t" not in repr(secrets)
    with pytest.raises(ConfigurationError) as info:
        secrets.get(NAME + "_OTHER")
    assert "s3cr3t" not in str(info.value)


def test_an_explicit_mapping_can_stand_in_for_the_environment():
    secrets = EnvSecrets({"API_KEY": "abc"})
    assert secrets.get("API_KEY") == "abc"
    with pytest.raises(ConfigurationError, match="secret OTHER is not set"):
        secrets.get("OTHER")


@pytest.mark.parametrize("name", ["", "  ", None, 3])
def test_a_bad_name_is_refused(name):
    with pytest.raises(ConfigurationError, match="a secret name must be a non-empty string"):
        EnvSecrets().get(name)


def test_registered_by_the_local_plugin(monkeypatch):
    registered = {}
    twin_local.register_secret_providers(lambda name, factory: registered.setdefault(name, factory))
    provider = registered["env"](BackendContext(config={}, secret=lambda name: ""))
    assert isinstance(provider, EnvSecrets)
    assert isinstance(provider, SecretsProvider)
    check_protocol("secrets", "env", provider)
    monkeypatch.setenv(NAME, "v")
    assert provider.get(NAME) == "v"
