"""The environment secrets provider: each secret is the environment variable of the same name."""

from __future__ import annotations

import os
from collections.abc import Mapping

from twin_server.errors import ConfigurationError


class EnvSecrets:
    """``get("OPENAI_API_KEY")`` returns ``$OPENAI_API_KEY``.

    A missing or blank variable raises ConfigurationError saying how to set it.
    No message or log line ever contains a secret's value.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        # None means the live os.environ, read at each get() so later exports are seen.
        self._environ = environ

    def __repr__(self) -> str:
        return "EnvSecrets()"

    def get(self, name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a secret name must be a non-empty string, not {name!r}")
        environ = os.environ if self._environ is None else self._environ
        value = environ.get(name)
        if value is None or not value.strip():
            state = "is not set" if value is None else "is empty"
            raise ConfigurationError(
                f"secret {name} {state}: export {name}=... "
                f"or choose another secrets provider with TWIN_SECRETS"
            )
        return value
