"""The OpenAI plugin's own exceptions; importing this module does not import ``openai``.

Both are ``BackendError``s (never retried by the core)::

    BackendError                 502
    ├── CredentialsRejected      502  OpenAI refused the API key, organization or project (401/403)
    └── QuotaExhausted           503  the account's quota or credit is spent (429 insufficient_quota)
"""

from __future__ import annotations

from twin_server.errors import BackendError

#: Where the API key comes from, for messages that tell an operator what to fix.
API_KEY_SECRET = "OPENAI_API_KEY"


class CredentialsRejected(BackendError):
    """OpenAI refused our credentials; an operator must fix the key, organization or project."""


class QuotaExhausted(BackendError):
    """The OpenAI account has no quota or credit left; retrying cannot help until an operator acts."""


#: (exception class, HTTP status, problem title) for the ``register_errors`` hook.
REGISTERED: tuple[tuple[type[BaseException], int, str], ...] = (
    (CredentialsRejected, 502, "Backend refused the request"),
    (QuotaExhausted, 503, "Service unavailable"),
)
