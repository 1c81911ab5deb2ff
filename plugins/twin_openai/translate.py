"""OpenAI's exceptions → twin-server's, at the plugin's boundary (``raise translate(exc) from exc``).

The core retries ``TransientError``s and only those; everything else reaches the
client at once with the status of its class::

    openai.APITimeoutError                    → BackendTimeout        504  transient
    openai.APIConnectionError                 → BackendUnavailable    503  transient
    openai.RateLimitError (429)               → RateLimited           503  transient, with Retry-After
        code "insufficient_quota"             → QuotaExhausted        503  logged loudly
    408 Request Timeout                       → BackendTimeout        504  transient (as the SDK treats it)
    409 Conflict (a lock timeout)             → BackendUnavailable    503  transient (as the SDK treats it)
    openai.InternalServerError (5xx)          → BackendUnavailable    503  transient; RateLimited with Retry-After
    openai.AuthenticationError (401)          → CredentialsRejected   502  logged as a configuration problem
    openai.PermissionDeniedError (403)        → CredentialsRejected   502  logged as a configuration problem
    openai.BadRequestError (400)
        code "context_length_exceeded"        → HistoryTooLong        400
    any other 4xx                             → BackendError          502
    an error event inside a stream            → BackendUnavailable    503  transient
    any other openai.OpenAIError              → BackendError          502

A response header ``x-should-retry: true|false`` overrides the transient choice
(the SDK's own convention). The Retry-After delay comes from ``retry-after-ms``,
else ``retry-after`` in seconds or as an HTTP date. The API key is scrubbed from
the vendor's exception before it is chained, so no message or traceback shows it.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable, Mapping

import openai

from twin_openai.errors import API_KEY_SECRET, CredentialsRejected, QuotaExhausted
from twin_server.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    HistoryTooLong,
    RateLimited,
    TransientError,
    TwinError,
)

log = logging.getLogger("twin_openai")

REDACTED = "[redacted]"
HISTORY_TOO_LONG = "This conversation is too long for the language model; start a new conversation."
_CONTEXT_PHRASES = ("context_length_exceeded", "maximum context length", "context window")


class ErrorTranslator:
    """Turns one backend's OpenAI exceptions into core errors; ``now`` is the wall clock for HTTP dates."""

    def __init__(self, api_key: str, base_url: str, *, now: Callable[[], float] = time.time) -> None:
        self._api_key = api_key
        self.base_url = base_url
        self.now = now

    def __call__(self, exc: openai.OpenAIError) -> TwinError:
        self._redact(exc)
        if isinstance(exc, openai.APITimeoutError):
            return BackendTimeout(f"{self.base_url} did not answer in time")
        if isinstance(exc, openai.APIConnectionError):
            return BackendUnavailable(f"could not reach {self.base_url}: {exc}")
        if isinstance(exc, openai.APIStatusError):
            return self._from_status(exc)
        if isinstance(exc, openai.APIResponseValidationError):
            return BackendError(f"{self.base_url} answered something that is not a chat completion")
        if isinstance(exc, openai.APIError):
            return BackendUnavailable(f"{self.base_url} reported an error mid-stream: {exc}")
        return BackendError(f"the openai SDK failed: {type(exc).__name__}: {exc}")

    def _from_status(self, exc: openai.APIStatusError) -> TwinError:
        status, code = exc.status_code, exc.code or ""
        headers = exc.response.headers
        retry_after = retry_after_seconds(headers, self.now)
        said = f"{self.base_url} answered {status}" + (f" ({code})" if code else "") + f": {exc.message}"
        if exc.request_id:
            said += f" [request id {exc.request_id}]"
        if status == 429 and code == "insufficient_quota":
            log.error(
                "OpenAI QUOTA EXHAUSTED: the account behind %s has no quota or credit left; "
                "every chat fails until an operator adds credit or raises the limit (retrying cannot help)",
                API_KEY_SECRET,
            )
            error: TwinError = QuotaExhausted(said)
        elif status == 429:
            error = RateLimited(said, retry_after=retry_after)
        elif status in (401, 403):
            log.error(
                "configuration problem: %s refused our credentials (%d); check the secret %s "
                "and TWIN_OPENAI_ORGANIZATION / TWIN_OPENAI_PROJECT",
                self.base_url, status, API_KEY_SECRET,
            )
            error = CredentialsRejected(said)
        elif status == 400 and _is_context_length(exc):
            error = HistoryTooLong(HISTORY_TOO_LONG)
        elif status == 408:
            error = BackendTimeout(said)
        elif status == 409 or status >= 500:
            error = BackendUnavailable(said) if retry_after is None else RateLimited(said, retry_after=retry_after)
        else:
            error = BackendError(said)
        return _obey_should_retry(error, headers.get("x-should-retry"), said, retry_after)

    def _redact(self, exc: BaseException) -> None:
        """Scrub the API key from the vendor's exception (some servers echo it back)."""
        key = self._api_key
        if not key:
            return
        if any(isinstance(arg, str) and key in arg for arg in exc.args):
            exc.args = tuple(arg.replace(key, REDACTED) if isinstance(arg, str) else arg for arg in exc.args)
        message = getattr(exc, "message", None)
        if isinstance(message, str) and key in message:
            exc.message = message.replace(key, REDACTED)
        body = getattr(exc, "body", None)
        if isinstance(body, Mapping) and isinstance(body.get("message"), str) and key in body["message"]:
            exc.body = {**body, "message": body["message"].replace(key, REDACTED)}


def _obey_should_retry(error: TwinError, header: str | None, said: str, retry_after: float | None) -> TwinError:
    if header == "true" and not isinstance(error, TransientError):
        return BackendUnavailable(said) if retry_after is None else RateLimited(said, retry_after=retry_after)
    if header == "false" and isinstance(error, TransientError):
        return BackendError(f"{said} (x-should-retry: false)")
    return error


def _is_context_length(exc: openai.APIStatusError) -> bool:
    if exc.code == "context_length_exceeded":
        return True
    text = (exc.message or "").lower()
    return any(phrase in text for phrase in _CONTEXT_PHRASES)


def retry_after_seconds(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """The server's requested delay in seconds, or None when it named none (or nonsense).

    ``retry-after-ms`` wins over ``retry-after``; ``retry-after`` is seconds or an
    HTTP date (a date in the past means "now": 0).
    """
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now())


def _finite(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
