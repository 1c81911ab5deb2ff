"""Wires the request log and the metrics into an app.

``create_app`` calls ``check`` with the other startup checks, hands
``attempt_observer(app)`` to the retry layer (every attempt of every backend
call lands in the request's ``accounting`` record and in the metrics), and
calls ``install`` once the routes exist: each request starts a record and,
when it is answered, gives one log line and its metric samples. A streamed
response is accounted for when the server closes it, so its duration and
backend time include the stream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, g, request

from twin_server.telemetry import usage as accounting
from twin_server.telemetry import logs
from twin_server.telemetry import request_log
from twin_server import config as settings
from twin_server.errors import ConfigurationError
from twin_server.telemetry.metrics import DEFAULT_FLUSH_SECONDS, EXTENSION_KEY, Metrics, bp
from twin_server.telemetry.redaction import register_config
from twin_server.retry import AttemptObserver
from twin_server.app_state import EXTENSION_KEY as STATE_KEY

UNMATCHED = "unmatched"


def check(config: Mapping[str, Any]) -> list[str]:
    """The problems in the observability settings, for ``create_app``'s StartupError."""
    problems = []
    try:
        settings.get_bool(config, "METRICS", True)
    except ConfigurationError as exc:
        problems.append(str(exc))
    try:
        _flush_seconds(config)
    except ConfigurationError as exc:
        problems.append(str(exc))
    try:
        logs.log_settings({f"TWIN_{key}": str(config[key]) for key in ("LOG_FORMAT", "LOG_LEVEL") if key in config})
    except ConfigurationError as exc:
        problems.append(str(exc))
    return problems


def _metrics_on(config: Mapping[str, Any]) -> bool:
    try:
        return settings.get_bool(config, "METRICS", True)
    except ConfigurationError:
        return False  # reported by check(); the app will not start


def _flush_seconds(config: Mapping[str, Any]) -> float:
    return settings.get_float(config, "METRICS_FLUSH_SECONDS", DEFAULT_FLUSH_SECONDS, minimum=0,
                              maximum=threading.TIMEOUT_MAX)


def _flush_seconds_or_default(config: Mapping[str, Any]) -> float:
    try:
        return _flush_seconds(config)
    except ConfigurationError:
        return DEFAULT_FLUSH_SECONDS  # reported by check(); the app will not start


def attempt_observer(app: Flask) -> Callable[[str, str], AttemptObserver]:
    """The ``RetryFactory`` observer factory; creates the app's metrics when they are on."""
    metrics = Metrics(_flush_seconds_or_default(app.config)) if _metrics_on(app.config) else None
    if metrics is not None:
        app.extensions[EXTENSION_KEY] = metrics

    current_record = accounting.current

    def for_backend(operation: str, backend: str) -> AttemptObserver:
        measure = metrics.attempt_observer(operation, backend) if metrics is not None else None

        def observe(attempt: int, seconds: float, exc: BaseException | None) -> None:
            record = current_record()
            if record is not None:  # outside a request (a script, the terminal chat) only the metrics count
                record.attempt(operation, backend, attempt, seconds, exc is not None)
            if measure is not None:
                measure(attempt, seconds, exc)

        return observe

    return for_backend


def install(app: Flask) -> None:
    """Start a record per request; log and measure it when it is answered. Routes ``/metrics``.

    Registers the config's secret values (keys, URL passwords) for redaction from every log line.
    """
    register_config(app.config)
    if EXTENSION_KEY in app.extensions:
        app.register_blueprint(bp)

    metrics: Metrics | None = app.extensions.get(EXTENSION_KEY)
    llm_backend = app.extensions[STATE_KEY].backends.llm.name

    @app.before_request
    def start_record() -> None:
        accounting.start(g.get("request_id") or "")

    @app.after_request
    def finish_record(response: Response) -> Response:
        record = accounting.current()
        if record is None:
            return response
        finish = _finisher(record, response.status_code, metrics, llm_backend)
        if response.is_streamed:
            response.call_on_close(finish)
        else:
            finish()
        return response


def _finisher(record: accounting.RequestRecord, status: int, metrics: Metrics | None,
              llm_backend: str) -> Callable[[], None]:
    """What to do once the request is over, with everything read while its context is alive."""
    current = request._get_current_object()  # one context lookup, not four
    rule = current.url_rule
    endpoint = rule.rule if rule is not None else UNMATCHED
    method, path, session_id = current.method, current.path, g.get("session_id")

    def finish() -> None:
        seconds = record.elapsed()
        if accounting.current() is record:
            accounting.stop()
        request_log.log_request(
            record, method=method, path=path, endpoint=endpoint, status=status, session_id=session_id, duration=seconds
        )
        if metrics is not None:
            metrics.observe_request(
                record, endpoint=endpoint, method=method, status=status, seconds=seconds, llm_backend=llm_backend
            )

    return finish
