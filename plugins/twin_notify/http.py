"""One HTTP POST of a notification, with its status and failures translated into the core's errors.

2xx is delivered; 429 is ``RateLimited`` (with Retry-After), 408 a timeout,
5xx and a connection failure ``BackendUnavailable`` (all retried by the
core); any other status is ``BackendError`` (a setting to fix, not retried).
No message names the URL: a webhook's URL is often its secret.
"""

from __future__ import annotations

from typing import Any

import requests

from twin_server.errors import BackendError, BackendTimeout, BackendUnavailable, RateLimited

#: One attempt never waits longer than this, whatever the deadline leaves.
ATTEMPT_TIMEOUT = 10.0


def attempt_timeout(left: float | None) -> float:
    if left is None:
        return ATTEMPT_TIMEOUT
    if left <= 0:
        raise BackendTimeout("no time was left to notify")
    return min(left, ATTEMPT_TIMEOUT)


def post(session: requests.Session, what: str, url: str, left: float | None, **kwargs: Any) -> requests.Response:
    try:
        response = session.post(url, timeout=attempt_timeout(left), allow_redirects=False, **kwargs)
    except requests.Timeout:
        raise BackendTimeout(f"{what} did not answer in time") from None
    except requests.ConnectionError:
        raise BackendUnavailable(f"{what} could not be reached") from None
    except requests.RequestException as exc:
        raise BackendError(f"{what} could not be called ({type(exc).__name__})") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    said = f"{what} answered {status}"
    if status == 429:
        raise RateLimited(said, retry_after=_seconds(response.headers.get("Retry-After")))
    if status == 408:
        raise BackendTimeout(said)
    if status >= 500:
        raise BackendUnavailable(said)
    raise BackendError(said)


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 3600 else None
