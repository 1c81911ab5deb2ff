"""OpenAI's error envelope, the problem renderer of everything under ``/v1``."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify

from twin_server.error_registry import PROBLEM_TYPE_PREFIX, Problem

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


class OpenAIErrors:
    """``{"error": {"message", "type", "param", "code"}}`` with the status of the core's registry."""

    def body(self, problem: Problem, request_id: str) -> dict[str, Any]:
        status = problem.status
        kind = ERROR_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
        message, param = problem.detail, None
        details = _flatten(problem.extras.get("errors")) if status < 500 else []
        if details:
            param = details[0][0]
            message = f"{message} " + "; ".join(f"{field}: {text}" for field, text in details)
        if problem.type.startswith(PROBLEM_TYPE_PREFIX):
            code = problem.type[len(PROBLEM_TYPE_PREFIX):]
        else:
            code = problem.title.lower()
        return {"error": {"message": message, "type": kind, "param": param, "code": re.sub(r"[^a-z0-9]+", "_", code)}}

    def response(self, problem: Problem, request_id: str) -> Response:
        response = jsonify(self.body(problem, request_id))
        response.status_code = problem.status
        response.headers.update(problem.headers)
        return response


def _flatten(errors: Any, path: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested messages as ("messages.0.role", "Must be one of: ...") pairs."""
    if isinstance(errors, dict):
        return [pair for key, value in errors.items() for pair in _flatten(value, f"{path}.{key}".lstrip("."))]
    if isinstance(errors, list):
        return [pair for item in errors for pair in _flatten(item, path)]
    return [(path, str(errors))] if errors is not None else []
