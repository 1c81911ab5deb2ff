"""Prometheus metrics of one app, served at ``GET /metrics``.

On by default; ``TWIN_METRICS=off`` leaves ``/metrics`` unrouted (404). Each
app has its own ``CollectorRegistry`` (so tests can build many apps). Under
gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` (set by ``gunicorn.conf.py`` before any
worker imports ``prometheus_client``) switches the client to its multiprocess
mode: every worker writes its samples to files there and ``/metrics`` sums
the files of all workers, live and dead, whichever worker answers.

In that mode a worker adds its samples up in memory and writes the totals
every ``TWIN_METRICS_FLUSH_SECONDS`` (default 1), before each scrape it
answers and when it exits (``metric_batches``): a scrape answered by another
worker sees a worker's samples up to one interval late, and a worker killed
with SIGKILL loses at most one interval. ``0`` writes every sample at once.
In one process (no ``PROMETHEUS_MULTIPROC_DIR``) samples are always written
at once: a value there is a float under a lock, as cheap as a pending total,
and the exposition reads it directly.

Every label has a closed set of values, so no request can add a series: the
``endpoint`` is the URL rule (``/conversation/<session_id>``), never the raw
path, or ``unmatched``; the ``method`` one of ``KNOWN_METHODS`` or ``other``;
the ``status`` a code from 100 to 599 or ``other``; an ``error`` one of the
first ``MAX_ERROR_CLASSES`` exception class names a backend raised, or ``other``.
Each series' child is looked up once and kept (pre-bound), not per sample.

Metrics:

- ``twin_http_requests_total{endpoint,method,status}``
- ``twin_http_request_duration_seconds{endpoint,method,status}`` (histogram)
- ``twin_backend_call_duration_seconds{operation,backend}`` (histogram, per attempt)
- ``twin_backend_errors_total{operation,backend,error}`` (failed attempts, by exception class)
- ``twin_backend_retries_total{operation,backend}`` (attempts after the first)
- ``twin_llm_tokens_total{backend,direction}`` (``input``/``output``, where the backend reports usage)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

from twin_server.telemetry.metric_batches import Batcher, flush_all
from twin_server.telemetry.usage import RequestRecord

EXTENSION_KEY = "twin_metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds; from a cache hit to a slow LLM answer (TWIN_LLM_TIMEOUT defaults to 60).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
OTHER = "other"
MAX_ERROR_CLASSES = 16
DEFAULT_FLUSH_SECONDS = 1.0

bp = Blueprint("twin_metrics", __name__)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER


def status_label(status: int) -> str:
    return str(status) if isinstance(status, int) and 100 <= status <= 599 else OTHER


def _write_through(child: Any) -> Any:
    return child


class Metrics:
    """The app's metric objects, and the exposition of them (or of every worker's)."""

    def __init__(self, flush_seconds: float = DEFAULT_FLUSH_SECONDS) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        batcher = Batcher(flush_seconds) if self.multiprocess and flush_seconds > 0 else None
        self._counter = batcher.counter if batcher is not None else _write_through
        self._histogram = batcher.histogram if batcher is not None else _write_through
        self.registry = CollectorRegistry()
        http = ("endpoint", "method", "status")
        backend = ("operation", "backend")
        self.requests = Counter("twin_http_requests", "HTTP requests answered.", http, registry=self.registry)
        self.request_seconds = Histogram(
            "twin_http_request_duration_seconds", "Time to answer an HTTP request.", http,
            buckets=BUCKETS, registry=self.registry,
        )
        self.backend_seconds = Histogram(
            "twin_backend_call_duration_seconds", "Time of one attempt of a backend call.", backend,
            buckets=BUCKETS, registry=self.registry,
        )
        self.backend_errors = Counter(
            "twin_backend_errors", "Failed backend attempts, by exception class.", (*backend, "error"),
            registry=self.registry,
        )
        self.retries = Counter("twin_backend_retries", "Backend attempts after the first.", backend, registry=self.registry)
        self.tokens = Counter(
            "twin_llm_tokens", "LLM tokens, where the backend reports usage.", ("backend", "direction"),
            registry=self.registry,
        )
        # Pre-bound children; every key is drawn from closed sets, so these stay small.
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._token_series: dict[str, tuple[Any, Any]] = {}

    def attempt_observer(self, operation: str, backend: str) -> Callable[[int, float, BaseException | None], None]:
        """Records one backend's attempts (its labelled series looked up once, not per call)."""
        seconds_series = self._histogram(self.backend_seconds.labels(operation, backend))
        retries_series = self._counter(self.retries.labels(operation, backend))
        error_series: dict[type, Any] = {}

        def observe(attempt: int, seconds: float, exc: BaseException | None) -> None:
            seconds_series.observe(seconds)
            if exc is not None:
                series = error_series.get(type(exc))
                if series is None:
                    name = type(exc).__name__ if len(error_series) < MAX_ERROR_CLASSES else OTHER
                    series = self._counter(self.backend_errors.labels(operation, backend, name))
                    if name != OTHER:
                        error_series[type(exc)] = series
                series.inc()
            if attempt > 1:
                retries_series.inc()

        return observe

    def observe_request(
        self, record: RequestRecord, *, endpoint: str, method: str, status: int, seconds: float, llm_backend: str
    ) -> None:
        """``endpoint`` must come from a closed set (the URL rule, or ``unmatched``); method and status are closed here."""
        key = (endpoint, method, status)
        series = self._request_series.get(key)
        if series is None:  # a racing duplicate is harmless: both bind the same child (and pending series)
            labels = (endpoint, method_label(method), status_label(status))
            series = (self._counter(self.requests.labels(*labels)),
                      self._histogram(self.request_seconds.labels(*labels)))
            if method in KNOWN_METHODS:  # an unknown method's key is the client's text: map it, never keep it
                self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)
        if record.input_tokens or record.output_tokens:
            tokens = self._token_series.get(llm_backend)
            if tokens is None:
                tokens = self._token_series[llm_backend] = (
                    self._counter(self.tokens.labels(llm_backend, "input")),
                    self._counter(self.tokens.labels(llm_backend, "output")))
            if record.input_tokens:
                tokens[0].inc(record.input_tokens)
            if record.output_tokens:
                tokens[1].inc(record.output_tokens)

    def exposition(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        flush_all()  # this worker's pending samples, and any other app's in this process
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


@bp.get("/metrics")
def metrics() -> Response:
    body = current_app.extensions[EXTENSION_KEY].exposition()
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)
