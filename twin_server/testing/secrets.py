"""The contract every secrets provider must keep, as a pytest class to subclass."""

from __future__ import annotations

import uuid

import pytest

from twin_server.errors import ConfigurationError

__all__ = ["SecretsProviderContract"]


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


class SecretsProviderContract:
    """Subclass as ``class TestMySecrets(SecretsProviderContract)`` with two fixtures:

    - ``secrets``: the provider;
    - ``known_secret``: ``(name, value)`` of a secret the provider holds (arrange it in the
      fixture); make the value distinctive, so finding it in a message means a leak.

    Overridable: ``unknown_secret_name`` fixture, a name the provider does not hold.
    """

    @pytest.fixture
    def secrets(self):
        raise NotImplementedError("a SecretsProviderContract subclass must define a `secrets` fixture")

    @pytest.fixture
    def known_secret(self) -> tuple[str, str]:
        raise NotImplementedError("a SecretsProviderContract subclass must define a `known_secret` fixture")

    @pytest.fixture
    def unknown_secret_name(self) -> str:
        return f"TWIN_CONTRACT_MISSING_{uuid.uuid4().hex[:12].upper()}"

    def test_get_returns_the_value(self, secrets, known_secret):
        name, value = known_secret
        assert secrets.get(name) == value
        assert secrets.get(name) == value

    def test_an_unknown_secret_is_a_configuration_error_naming_it(self, secrets, known_secret, unknown_secret_name):
        secrets.get(known_secret[0])  # the value is now held, where a careless message could reach it
        with pytest.raises(ConfigurationError) as raised:
            secrets.get(unknown_secret_name)
        assert unknown_secret_name in str(raised.value)

    def test_no_message_or_repr_holds_a_secret_value(self, secrets, known_secret, unknown_secret_name):
        name, value = known_secret
        secrets.get(name)
        with pytest.raises(ConfigurationError) as raised:
            secrets.get(unknown_secret_name)
        for exc in _chain(raised.value):
            assert value not in str(exc) and value not in repr(exc), f"{type(exc).__name__} holds the value"
        assert value not in repr(secrets)
