"""Structured logs: one line per request with its cost, nothing private, JSON or text."""

import io
import json
import logging
import sys

import pytest

from twin_server.telemetry.usage import report_usage
from twin_server.errors import BackendUnavailable, ConfigurationError
from twin_server.telemetry.logs import JsonFormatter, TextFormatter, configure_logging, log_settings

SECRET = "sk-live-4f9c2a7e1b3d5f60"
MESSAGE = "my bank pin is 2468 please remember"


def request_lines(caplog):
    return [r for r in caplog.records if r.name == "twin_server.request"]


def test_one_line_per_request_with_timings_retries_and_ids(scripted_app, scripted, caplog):
    scripted.llm.steps = [BackendUnavailable("overloaded"), "fine, thanks"]
    client = scripted_app().test_client()
    with caplog.at_level(logging.INFO):
        response = client.post("/chat", json={"message": "how are you?", "session_id": "visitor-0042"})
        client.get("/conversation/visitor-0042")
    assert response.status_code == 200
    chat_line, conversation_line = request_lines(caplog)
    fields = json.loads(JsonFormatter().format(chat_line))
    assert fields["message"].startswith("POST /chat 200 ")
    assert {k: fields[k] for k in ("method", "path", "endpoint", "status", "session_id", "retries")} == {
        "method": "POST", "path": "/chat", "endpoint": "/chat", "status": 200, "session_id": "visitor-0042", "retries": 1,
    }
    assert fields["request_id"] == response.headers["X-Request-ID"]
    assert fields["duration_ms"] > 0
    llm = fields["backends"]["llm"]
    assert (llm["backend"], llm["calls"], llm["attempts"], llm["errors"]) == ("scripted", 1, 2, 1)
    assert fields["backends"]["storage"]["backend"] == "memory"
    assert fields["backends"]["persona"]["calls"] == 1
    assert conversation_line.endpoint == "/conversation/<session_id>"
    assert conversation_line.path == "/conversation/visitor-0042"
    assert conversation_line.backends["storage"]["calls"] == 1 and conversation_line.retries == 0


def test_refused_and_failed_requests_are_logged_too(scripted_app, scripted, caplog):
    scripted.llm.steps = [BackendUnavailable("down")] * 3
    client = scripted_app(RETRY_LLM_MAX_ATTEMPTS=3).test_client()
    with caplog.at_level(logging.INFO):
        client.post("/chat", json={"message": ""})
        client.post("/chat", json={"message": "hello"})
        client.get("/no/such/route")
    bad, failed, missing = request_lines(caplog)
    assert (bad.status, bad.backends) == (400, {})
    assert (failed.status, failed.retries, failed.backends["llm"]["errors"]) == (503, 2, 3)
    assert (missing.status, missing.endpoint) == (404, "unmatched")


def test_no_message_text_or_secret_in_logs_at_info(scripted_app, scripted, caplog):
    client = scripted_app(API_KEYS=SECRET).test_client()  # the scripted LLM echoes the message back
    headers = {"Authorization": f"Bearer {SECRET}"}
    completion = {"model": "twin", "messages": [{"role": "user", "content": MESSAGE}]}
    with caplog.at_level(logging.INFO):
        statuses = [
            client.post(f"/chat?api_key={SECRET}", json={"message": MESSAGE}, headers=headers).status_code,
            client.post("/chat", json={"message": MESSAGE * 200}, headers=headers).status_code,
            client.post("/chat", json={"message": MESSAGE, "extra": SECRET}, headers=headers).status_code,
            client.post("/v1/chat/completions", json=completion, headers={"X-API-Key": SECRET}).status_code,
            client.post("/v1/chat/completions", json=completion, headers={"X-API-Key": SECRET + "x"}).status_code,
        ]
    assert statuses == [200, 400, 400, 200, 401]
    assert len(request_lines(caplog)) == 5
    for formatter in (JsonFormatter(), TextFormatter()):
        text = "\n".join(formatter.format(record) for record in caplog.records)
        assert SECRET not in text
        assert "2468" not in text and "bank pin" not in text


def test_tokens_reported_by_the_backend_are_logged(scripted_app, scripted, caplog):
    def reply(prompt):
        report_usage(input_tokens=120, output_tokens=7)
        return "short"

    scripted.llm.steps = [reply]
    with caplog.at_level(logging.INFO):
        scripted_app().test_client().post("/chat", json={"message": "hi"})
    (line,) = request_lines(caplog)
    assert (line.tokens_in, line.tokens_out) == (120, 7)


def test_report_usage_outside_a_request_touches_no_record():
    from twin_server.telemetry import usage

    assert usage.current() is None
    report_usage(input_tokens=5, output_tokens=5)  # the terminal chat: nobody to tell
    record = usage.start("request-1")
    try:
        assert (record.input_tokens, record.output_tokens) == (0, 0)
        report_usage(input_tokens=2, output_tokens=3)
        assert (record.input_tokens, record.output_tokens) == (2, 3)
    finally:
        usage.stop()


def test_json_formatter_has_extras_and_exception():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("twin_server", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info())
    record.problem = {"status": 500}
    document = json.loads(JsonFormatter().format(record))
    assert document["message"] == "failed x" and document["level"] == "ERROR"
    assert document["problem"] == {"status": 500}
    assert "ValueError: boom" in document["exception"]
    assert document["time"].endswith("Z") and isinstance(document["pid"], int)


def test_text_formatter_is_one_readable_line():
    record = logging.LogRecord("twin_server.request", logging.INFO, __file__, 1, "POST /chat 200 3.0ms", (), None)
    record.status, record.backends = 200, {"llm": {"backend": "offline", "ms": 1.5}}
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert line.endswith('POST /chat 200 3.0ms  status=200 backends={"llm":{"backend":"offline","ms":1.5}}')


def test_configure_logging_switches_format_without_stacking_handlers(monkeypatch):
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        configure_logging("json", "INFO", stream=first)
        configure_logging("text", "INFO", stream=second)
        assert len(root.handlers) == len(before) + 1
        logging.getLogger("twin_server.test").info("hello")
        assert first.getvalue() == ""
        assert second.getvalue().rstrip().endswith("INFO twin_server.test: hello")
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_log_settings_default_and_validation():
    assert log_settings({}) == ("text", "INFO")
    assert log_settings({}, default_format="json") == ("json", "INFO")
    assert log_settings({"TWIN_LOG_FORMAT": "JSON", "TWIN_LOG_LEVEL": "warning"}) == ("json", "WARNING")
    with pytest.raises(ConfigurationError) as caught:
        log_settings({"TWIN_LOG_FORMAT": "xml", "TWIN_LOG_LEVEL": "LOUD"})
    assert "TWIN_LOG_FORMAT" in str(caught.value) and "TWIN_LOG_LEVEL" in str(caught.value)


def test_json_formatter_takes_any_extra_value():
    record = logging.LogRecord("twin_server", logging.INFO, __file__, 1, "odd extras", (), None)
    record.counts, record.huge, record.when = {1: "one", None: "none"}, 2**70, object()
    document = json.loads(JsonFormatter().format(record))
    assert document["counts"] == {"1": "one", "null": "none"} and document["huge"] == 2**70
    assert document["when"].startswith("<object object")


def test_each_line_is_stamped_with_its_own_second_and_milliseconds():
    formatter = JsonFormatter()

    def stamp(created):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        record.created = created
        return json.loads(formatter.format(record))["time"]

    assert [stamp(t) for t in (1700000000.5, 1700000000.75, 1700000001.25, 1700000000.125)] == [
        "2023-11-14T22:13:20.500Z", "2023-11-14T22:13:20.750Z", "2023-11-14T22:13:21.250Z", "2023-11-14T22:13:20.125Z"]


def _request_lines(count):
    from twin_server.telemetry.logs import log_request
    from twin_server.telemetry.usage import RequestRecord

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    logger = logging.getLogger("twin_server.request")
    keep, level, propagate = Keep(), logger.level, logger.propagate
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for n in range(count):
            log_request(RequestRecord(f"rid-{n}"), method="POST", path="/chat", endpoint="/chat", status=200 + n,
                        session_id="visitor-1", duration=0.25 + n)
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
        logger.propagate = propagate
    return seen


def test_request_lines_carry_every_attribute_of_a_log_record_with_their_own_time_and_thread():
    import threading
    import time

    lines = []

    def requests():
        lines.extend(_request_lines(1))
        time.sleep(0.01)  # so the next lines' time differs from the first's
        threading.current_thread().name = "request-thread-8"
        lines.extend(_request_lines(2))

    worker = threading.Thread(target=requests, name="request-thread-7")
    before = time.time()
    worker.start()
    worker.join()
    standard = logging.LogRecord("twin_server.request", logging.INFO, __file__, 0, "m", (), None)
    assert [line.threadName for line in lines] == ["request-thread-7", "request-thread-8", "request-thread-8"]
    for n, line in enumerate(lines):
        assert set(vars(standard)) <= set(vars(line))  # what any handler may read is there
        assert (line.thread, line.process, line.pathname) == (worker.ident, standard.process, lines[0].pathname)
        assert line.getMessage() == f"POST /chat {200 + (n and n - 1)} {1000 * (0.25 + (n and n - 1)):.1f}ms"
        assert before <= line.created <= time.time()
        assert line.msecs == int((line.created - int(line.created)) * 1000)
        assert abs(line.relativeCreated - (line.created - logging._startTime) * 1000) < 1
    assert [line.request_id for line in lines] == ["rid-0", "rid-0", "rid-1"]
    assert lines[0].created + 0.01 <= lines[1].created <= lines[2].created


def test_a_forked_child_names_its_own_process_in_request_lines():
    import os

    assert _request_lines(2)[1].process == os.getpid()  # this thread's template exists now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's exit code is the assertion)
        os.close(read)
        os.write(write, str(_request_lines(1)[0].process).encode())
        os._exit(0)
    os.close(write)
    reported = int(os.read(read, 64))
    os.waitpid(child, 0)
    assert reported == child


def test_a_record_factory_of_the_operators_makes_request_lines_too():
    made = []
    default = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = default(*args, **kwargs)
        record.deployment = "blue"
        made.append(record)
        return record

    logging.setLogRecordFactory(factory)
    try:
        lines = _request_lines(2)
    finally:
        logging.setLogRecordFactory(default)
    assert [line.deployment for line in lines] == ["blue", "blue"] and made == lines
