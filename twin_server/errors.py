"""The exceptions every part of twin-server raises.

Backends translate their vendor's exceptions into these at their boundary
(``raise BackendUnavailable(...) from exc``), so the core's retry and its
error-to-status registry only ever see this tree::

    TwinError                         500  base class
    ├── ConfigurationError            500  a setting, secret or extra is missing or wrong
    │   └── StartupError              ---  raised by create_app, lists every problem at once
    ├── PersonaError                  500  the persona cannot be loaded
    ├── BackendError                  502  the backend refused the request (not worth retrying)
    ├── ValidationError               400  the client sent something we cannot accept
    │   └── HistoryTooLong            400  the conversation no longer fits the model's context
    ├── NotFound                      404
    ├── LimitExceeded                 429  a per-session or per-client allowance is spent
    ├── NotReady                      503  /ready: a backend or the persona is not ready yet
    └── TransientError                503  the core may retry it
        ├── BackendUnavailable        503
        │   └── RateLimited           503  with Retry-After
        └── BackendTimeout            504

The core also tags an exception with the ``operation`` ("storage", "persona",
"secrets", "llm") and ``backend`` name it came from, so a problem document
can name what failed without quoting the exception's text.
"""

from __future__ import annotations

__all__ = [
    "TwinError",
    "ConfigurationError",
    "StartupError",
    "PersonaError",
    "BackendError",
    "ValidationError",
    "HistoryTooLong",
    "NotFound",
    "LimitExceeded",
    "NotReady",
    "TransientError",
    "BackendUnavailable",
    "RateLimited",
    "BackendTimeout",
]


class TwinError(Exception):
    """Base class of every error twin-server raises on purpose."""

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(message, *args)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(TwinError):
    """A setting, secret or optional dependency is missing or wrong; an operator must act."""


class StartupError(ConfigurationError):
    """The app cannot start; ``problems`` lists every reason found, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"twin-server cannot start:\n{lines}")


class PersonaError(TwinError):
    """The persona is missing or invalid."""


class BackendError(TwinError):
    """A backend refused the request and retrying cannot help (bad credentials, bad request)."""


class ValidationError(TwinError):
    """The client's input cannot be accepted; the message is safe to show to the client."""


class HistoryTooLong(ValidationError):
    """The conversation no longer fits in the language model's context window."""


class NotFound(TwinError):
    """The thing asked for does not exist."""


class LimitExceeded(TwinError):
    """A per-session or per-client allowance is spent."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(TwinError):
    """The app is up but cannot serve chats yet (raised from the reason)."""


class TransientError(TwinError):
    """A failure that may go away by itself; the core retries these and only these."""


class BackendUnavailable(TransientError):
    """The backend could not be reached or answered with a server error."""


class RateLimited(BackendUnavailable):
    """The backend asked us to slow down; ``retry_after`` is in seconds when it said."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendTimeout(TransientError):
    """The backend did not answer in time, or the operation's deadline passed."""
