"""The document's shared parts: security schemes, response headers, and one response per error status."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

#: Every API key is accepted in either header (``twin_server.http.auth``).
API_KEY_SCHEMES = ("ApiKey", "ApiKeyHeader")

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A key of TWIN_API_KEYS as `Authorization: Bearer <key>`. Needed under /v1 when keys are set, "
        "and everywhere but /health and /ready with TWIN_PUBLIC_CHAT=false.",
    },
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same key in `X-API-Key`.",
    },
    "OwnerKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A key of TWIN_OWNER_KEYS as `Authorization: Bearer <key>`, for the owner's endpoints.",
    },
}

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: the client's X-Request-ID when it is 1-128 characters of "
        "A-Za-z0-9._:-, else a new one. Problem documents repeat it as `request_id`.",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again, when a wait is known (rate limits, a busy "
        "backend, the daily budget); a per-session cap has none: start a new conversation.",
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {"required": True, "schema": {"type": "string"}},
    "Allow": {"description": "The methods the path answers.", "required": True, "schema": {"type": "string"}},
}

#: status → (response name, what it means, the headers it carries).
ERRORS: dict[int, tuple[str, str, tuple[str, ...]]] = {
    400: ("BadRequest", "Invalid request: malformed JSON, a body that is not an object, an unknown or invalid "
          "field (`errors` says which), a bad session id.", ()),
    401: ("Unauthorized", "A key is required and none, or no valid one, was sent.", ("WWW-Authenticate",)),
    404: ("NotFound", "No such resource, or no route for the path.", ()),
    405: ("MethodNotAllowed", "Any method a path does not list answers this, with `Allow`.", ("Allow",)),
    413: ("PayloadTooLarge", "The body is larger than TWIN_MAX_CONTENT_LENGTH bytes.", ()),
    415: ("UnsupportedMediaType", "The body is not `application/json`.", ()),
    429: ("TooManyRequests", "A limit is reached: the client's rate limit (TWIN_RATE_LIMIT) or the session's cap "
          "(TWIN_SESSION_MAX_MESSAGES, TWIN_SESSION_MAX_CHARS).", ("Retry-After",)),
    500: ("InternalServerError", "Something failed that the client cannot fix: the persona, the configuration, "
          "a bug. The detail is a fixed sentence; the log has the rest.", ()),
    502: ("BadGateway", "A backend refused the request (bad credentials, bad request).", ()),
    503: ("ServiceUnavailable", "A backend is unavailable or busy (after the core's retries), the daily LLM "
          "budget is spent, or the server is not ready.", ("Retry-After",)),
    504: ("GatewayTimeout", "A backend did not answer within its deadline (TWIN_<KIND>_TIMEOUT).", ()),
}


def header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def request_id_header() -> dict[str, Any]:
    return {"X-Request-ID": header_ref("X-Request-ID")}


def error_name(prefix: str, status: int) -> str:
    return prefix + ERRORS[status][0]


def add_common(spec: APISpec) -> None:
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for name, header in HEADERS.items():
        spec.components.header(name, header)


def add_error_responses(spec: APISpec, prefix: str, media_type: str, schema_ref: dict) -> None:
    """One response per error status, answered in ``media_type`` with the schema at ``schema_ref``."""
    for status, (_, meaning, headers) in ERRORS.items():
        spec.components.response(
            error_name(prefix, status),
            {
                "description": meaning,
                "headers": {**request_id_header(), **{name: header_ref(name) for name in headers}},
                "content": {media_type: {"schema": schema_ref}},
            },
        )
