"""The one line every HTTP request ends in, from the ``twin_server.request`` logger (INFO).

It holds the request's method, path, URL rule, status, duration, request and
session ids, per-backend timings, retries and tokens: never message text,
bodies, headers or query strings. When the line would meet nothing but our
JSON handler (``configure_logging``'s, as under gunicorn: no filter on the
request logger or the handler, no other handler on the way up, the default
record factory), it is formatted and written by that handler directly, the
same characters ``JsonFormatter`` writes, without a ``LogRecord`` and the
dispatch through the logging hierarchy (a third of the line's cost). Anything
else configured there gets the line through ``logging`` as any other record.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from twin_server.telemetry import usage as accounting
from twin_server.telemetry.logs import _FIELDS, _MARK, REQUEST_LOGGER, JsonFormatter, RedactingHandler, json_line
from twin_server.telemetry.redaction import secrets

__all__ = ["log_request"]

request_log = logging.getLogger(REQUEST_LOGGER)
MESSAGE = "%s %s %d %.1fms"


def log_request(
    record: accounting.RequestRecord,
    *,
    method: str,
    path: str,
    endpoint: str,
    status: int,
    session_id: str | None,
    duration: float,
) -> None:
    """The line of a finished request: what it was, how long, what it cost."""
    if not request_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "endpoint": endpoint,
        "status": status,
        "duration_ms": round(duration * 1000, 2),
        "request_id": record.request_id,
        "session_id": session_id,
        "backends": {op: use.as_dict() for op, use in record.backends.items()},
        "retries": record.retries,
    }
    if record.input_tokens or record.output_tokens:
        fields["tokens_in"], fields["tokens_out"] = record.input_tokens, record.output_tokens
    args = (method, path, status, duration * 1000)
    handler = _sole_json_handler()
    if handler is not None:
        created = time.time()
        document = {"time": handler.formatter.timestamp(created), "level": "INFO", "logger": REQUEST_LOGGER,
                    "pid": os.getpid(), "message": MESSAGE % args, **fields}
        try:
            handler.write(secrets.redact(json_line(document)))
            return
        except RecursionError:
            raise
        except Exception:
            handler.handleError(_record(args, fields))  # as logging reports a handler that failed
            return
    # A record made here and handed to ``handle``: ``info`` would also walk the stack for the caller.
    request_log.handle(_record(args, fields))


def _record(args: tuple[Any, ...], fields: dict[str, Any]) -> logging.LogRecord:
    line = logging.getLogRecordFactory()(REQUEST_LOGGER, logging.INFO, __file__, 0, MESSAGE, args, None)
    line.__dict__.update(fields)
    line.__dict__[_FIELDS] = fields
    return line


def _sole_json_handler() -> RedactingHandler | None:
    """Our JSON handler when it is all a request line meets on its way up the loggers; None otherwise."""
    if request_log.filters or logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    found: list[logging.Handler] = []
    logger: logging.Logger | None = request_log
    while logger is not None:
        found += logger.handlers
        if not logger.propagate:
            break
        logger = logger.parent
    if len(found) != 1:
        return None
    handler = found[0]
    if (type(handler) is not RedactingHandler or not getattr(handler, _MARK, False) or handler.filters
            or handler.level > logging.INFO or type(handler.formatter) is not JsonFormatter):
        return None
    return handler
