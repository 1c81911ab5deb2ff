"""GET /metrics: Prometheus text, parsed back with prometheus_client's own parser."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from twin_server.telemetry.usage import report_usage
from twin_server.errors import BackendUnavailable, StartupError


def scrape(client) -> dict[tuple[str, frozenset], float]:
    """Every sample as {(name, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_counted_by_url_rule_and_status(scripted_app):
    client = scripted_app().test_client()
    for _ in range(3):
        assert client.post("/chat", json={"message": "hi", "session_id": "visitor-0001"}).status_code == 200
    client.post("/chat", json={"message": ""})
    client.get("/conversation/visitor-0001")
    client.get("/conversation/visitor-0002")
    client.get("/nowhere")
    samples = scrape(client)
    assert value(samples, "twin_http_requests_total", endpoint="/chat", method="POST", status="200") == 3
    assert value(samples, "twin_http_requests_total", endpoint="/chat", method="POST", status="400") == 1
    assert value(samples, "twin_http_requests_total", endpoint="/conversation/<session_id>", method="GET", status="200") == 2
    assert value(samples, "twin_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert not any("visitor-0001" in str(labels) for _, labels in samples)
    count = value(samples, "twin_http_request_duration_seconds_count", endpoint="/chat", method="POST", status="200")
    inf = value(samples, "twin_http_request_duration_seconds_bucket", endpoint="/chat", method="POST", status="200", le="+Inf")
    assert count == inf == 3
    assert value(samples, "twin_http_request_duration_seconds_sum", endpoint="/chat", method="POST", status="200") > 0


def test_backend_latency_errors_and_retries(scripted_app, scripted):
    scripted.llm.steps = [BackendUnavailable("busy"), BackendUnavailable("busy"), "ok"]
    client = scripted_app().test_client()
    assert client.post("/chat", json={"message": "hi"}).status_code == 200
    samples = scrape(client)
    llm = {"operation": "llm", "backend": "scripted"}
    assert value(samples, "twin_backend_call_duration_seconds_count", **llm) == 3  # one per attempt
    assert value(samples, "twin_backend_errors_total", **llm, error="BackendUnavailable") == 2
    assert value(samples, "twin_backend_retries_total", **llm) == 2
    # the persona was loaded at startup (warm-up) and for the turn; the turn loaded and saved history
    assert value(samples, "twin_backend_call_duration_seconds_count", operation="persona", backend="static") == 2
    # A new session: its turn reads no history, so the one storage call is the append.
    assert value(samples, "twin_backend_call_duration_seconds_count", operation="storage", backend="memory") == 1


def test_tokens_where_the_backend_reports_them(scripted_app, scripted):
    def reply(prompt):
        report_usage(input_tokens=300, output_tokens=20)
        return "ok"

    scripted.llm.steps = [reply, reply, "no usage reported"]
    client = scripted_app().test_client()
    for _ in range(3):
        client.post("/chat", json={"message": "hi"})
    samples = scrape(client)
    assert value(samples, "twin_llm_tokens_total", backend="scripted", direction="input") == 600
    assert value(samples, "twin_llm_tokens_total", backend="scripted", direction="output") == 40


def test_each_app_counts_only_its_own_requests(scripted_app):
    first, second = scripted_app().test_client(), scripted_app().test_client()
    first.post("/chat", json={"message": "hi"})
    assert value(scrape(second), "twin_http_requests_total", endpoint="/chat", method="POST", status="200") == 0


def test_metrics_off_is_404(scripted_app):
    client = scripted_app(METRICS="off").test_client()
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_bad_observability_settings_stop_the_start(scripted_app):
    with pytest.raises(StartupError) as caught:
        scripted_app(METRICS="sometimes", LOG_LEVEL="chatty", METRICS_FLUSH_SECONDS="-1")
    text = "\n".join(caught.value.problems)
    assert "TWIN_METRICS " in text and "TWIN_LOG_LEVEL" in text
    assert "TWIN_METRICS_FLUSH_SECONDS must be at least 0" in text


def test_a_flush_interval_no_thread_can_wait_stops_the_start(scripted_app):
    """Past ``threading.TIMEOUT_MAX`` the flusher thread's wait raises: it would die and flush nothing."""
    with pytest.raises(StartupError, match="TWIN_METRICS_FLUSH_SECONDS must be at most"):
        scripted_app(METRICS_FLUSH_SECONDS="1e12")


def series_of(samples, name):
    return {labels for sample_name, labels in samples if sample_name == name}


def test_made_up_methods_and_paths_add_no_series(scripted_app):
    """Issue 18, item 1: every label from a closed set, whatever the client sends."""
    client = scripted_app(RATE_LIMIT="off").test_client()
    client.post("/chat", json={"message": "hi"})
    client.get("/health")
    before = series_of(scrape(client), "twin_http_requests_total")

    def attack(start):
        for i in range(start, start + 200):
            client.open(f"/probe-{i}/x{i}", method=f"XAAAA{i}")
            client.open("/health", method=f"XB{i}")
            client.get(f"/conversation/not-a-valid-id-{i}!")
        return series_of(scrape(client), "twin_http_requests_total")

    first = attack(0)
    assert attack(200) == first  # 600 more unique methods and paths: not one more series
    assert len(first - before) <= 6
    labels = [dict(series) for series in first]
    assert {label["method"] for label in labels} <= {"GET", "POST", "other"}
    assert all(not label["endpoint"].startswith("/probe") for label in labels)


def test_backend_error_classes_are_capped(scripted_app, scripted):
    from twin_server.telemetry.metrics import MAX_ERROR_CLASSES

    def failing(i):
        def fail(prompt):
            raise type(f"Error{i}", (BackendUnavailable,), {})("made-up class")
        return fail

    scripted.llm.steps = [failing(i) for i in range(MAX_ERROR_CLASSES + 10)]
    client = scripted_app(RETRY_LLM_MAX_ATTEMPTS=1).test_client()
    for _ in range(MAX_ERROR_CLASSES + 10):
        client.post("/chat", json={"message": "hi"})
    errors = [dict(labels) for labels in series_of(scrape(client), "twin_backend_errors_total")]
    assert len(errors) == MAX_ERROR_CLASSES + 1
    assert value(scrape(client), "twin_backend_errors_total", operation="llm", backend="scripted", error="other") == 10


def test_under_gunicorn_made_up_methods_add_no_series(tmp_path):
    """The multiprocess files of a real gunicorn do not grow with the attack either."""
    import socket

    import requests

    from tests.doubles.servers import gunicorn

    with gunicorn({"TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_RATE_LIMIT": "off",
                   "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}, workers=1, threads=2) as url:
        host, port = url.removeprefix("http://").split(":")
        requests.get(url + "/health", timeout=10)
        for i in range(120):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(f"XAAAA{i} /p{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                assert sock.recv(100).startswith(b"HTTP/1.1 ")
        families = text_string_to_metric_families(requests.get(url + "/metrics", timeout=10).text)
        series = [s.labels for f in families if f.name == "twin_http_requests" for s in f.samples]
    assert len(series) <= 4, series
    assert {s["method"] for s in series} <= {"GET", "other"}
