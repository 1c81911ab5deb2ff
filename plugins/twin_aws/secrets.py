"""The AWS Secrets Manager provider: ``get(name)`` reads secret TWIN_AWS_SECRET_PREFIX + name.

A plain-string secret is returned as it is; a secret whose string is a JSON
object returns its key ``name`` (so one secret can hold several values). Each
value is fetched once and kept for TWIN_AWS_SECRET_TTL seconds, so a rotated
secret is picked up without a restart and a request costs no call; if a
refresh fails transiently the value already held is kept and the failure
logged. No value ever reaches an exception, a log line or a ``repr``: botocore
logs raw response bodies at DEBUG, so those of Secrets Manager are redacted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from twin_aws.clients import join_key, make_client, operation_timeout, require_boto3, translated
from twin_server import Settings
from twin_server.errors import BackendUnavailable, ConfigurationError, TransientError, TwinError

__all__ = ["SecretsManagerProvider"]

log = logging.getLogger("twin_aws.secrets")

DEFAULT_PREFIX = "twin/"
DEFAULT_TTL = 300.0
_MARKERS = (b'"SecretString"', b'"SecretBinary"')


class SecretsManagerProvider:
    """A SecretsProvider over AWS Secrets Manager, with a TTL cache."""

    def __init__(
        self, client: Any, prefix: str = DEFAULT_PREFIX, ttl: float = DEFAULT_TTL,
        *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.prefix, self.ttl, self.clock = client, prefix, ttl, clock
        self._cache: dict[str, tuple[float, str]] = {}  # name -> (expires at, value)
        self._lock = threading.Lock()
        install_redaction()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SecretsManagerProvider":
        settings = Settings(config)
        require_boto3("secrets provider 'aws'")
        prefix = settings.get_str("AWS_SECRET_PREFIX", DEFAULT_PREFIX) or ""
        ttl = settings.get_float("AWS_SECRET_TTL", DEFAULT_TTL, minimum=0)
        client = make_client("secretsmanager", operation_timeout(config, "secrets"), what="secrets provider 'aws'")
        return cls(client, prefix, ttl)

    def __repr__(self) -> str:
        return f"SecretsManagerProvider(prefix={self.prefix!r})"

    def get(self, name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a secret name must be a non-empty string, not {name!r}")
        cached = self._cache.get(name)
        if cached is not None and self.clock() < cached[0]:
            return cached[1]
        with self._lock:  # one fetch per secret, not one per waiting request
            cached = self._cache.get(name)
            if cached is not None and self.clock() < cached[0]:
                return cached[1]
            try:
                value = self._fetch(name)
            except TransientError as exc:
                if cached is None:
                    raise
                log.warning("cannot refresh secret %s (%s); keeping the value already held", name, type(exc).__name__)
                value = cached[1]
            self._cache[name] = (self.clock() + self.ttl, value)
        return value

    def _fetch(self, name: str) -> str:
        secret_id = join_key(self.prefix, name)
        with translated(f"Secrets Manager GetSecretValue of {secret_id}", _special(name, secret_id)):
            response = self.client.get_secret_value(SecretId=secret_id)
        text = response.get("SecretString")
        if text is None:
            try:
                text = bytes(response.get("SecretBinary") or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigurationError(f"secret {secret_id} is binary, not UTF-8 text") from None
        value = _value_of(text, name, secret_id)
        if not value.strip():
            raise ConfigurationError(f"secret {secret_id} is empty; store the value of {name} in it")
        return value


def _value_of(text: str, name: str, secret_id: str) -> str:
    """The secret's string, or its key ``name`` when it is a JSON object."""
    if not text.lstrip().startswith("{"):
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text  # a plain string that happens to start with "{"
    if not isinstance(data, dict):
        return text
    value = data.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        # Name the keys' count, never their values.
        raise ConfigurationError(
            f"secret {secret_id} is a JSON object ({len(data)} keys) without a string key {name!r}; "
            f"add that key or store the value as plain text"
        )
    return value


def _special(name: str, secret_id: str) -> Callable[[str, Any], TwinError | None]:
    how = f"create secret {secret_id} holding the value of {name}, or set TWIN_AWS_SECRET_PREFIX"

    def special(code: str, exc: Any) -> TwinError | None:
        if code == "resourcenotfoundexception":
            return ConfigurationError(f"secret {secret_id} does not exist in AWS Secrets Manager: {how}")
        if code == "invalidrequestexception":
            return ConfigurationError(
                f"secret {secret_id} cannot be read now (e.g. it is scheduled for deletion): restore it or {how}"
            )
        if code == "invalidparameterexception":
            return ConfigurationError(f"secret id {secret_id} was refused as invalid: {how}")
        if code == "decryptionfailure":
            return ConfigurationError(
                f"secret {secret_id} cannot be decrypted: give the server kms:Decrypt on the secret's KMS key"
            )
        if code == "internalserviceerror":
            return BackendUnavailable(f"AWS Secrets Manager failed reading {secret_id} (InternalServiceError)")
        return None

    return special


class _RedactSecretsManagerBodies(logging.Filter):
    """Blanks botocore's DEBUG dump of a response body that carries a secret's value."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, (bytes, bytearray)) and any(marker in arg for marker in _MARKERS) for arg in record.args
        ):
            record.args = tuple(
                b"<redacted: Secrets Manager secret value>" if isinstance(arg, (bytes, bytearray)) else arg
                for arg in record.args
            )
        return True


_REDACTION = _RedactSecretsManagerBodies()


def install_redaction() -> None:
    """Attach the redacting filter to botocore's parser logger (once per process)."""
    logger = logging.getLogger("botocore.parsers")
    if _REDACTION not in logger.filters:
        logger.addFilter(_REDACTION)
