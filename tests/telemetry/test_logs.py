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



def _log_request_lines(stream, count=2, *, direct=True):
    """``count`` request lines through ``configure_logging``'s JSON handler on ``stream``, alone on the root
    logger (pytest's capture handlers taken off meanwhile); their documents."""
    from twin_server.telemetry import request_log
    from twin_server.telemetry.request_log import log_request
    from twin_server.telemetry.usage import RequestRecord

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.handlers[:] = []
        configure_logging("json", "INFO", stream=stream)
        assert (request_log._sole_json_handler() is root.handlers[0]) is direct
        for n in range(count):
            record = RequestRecord(f"rid-{n}")
            record.attempt("llm", "offline", 1, 0.0123, False)
            record.input_tokens, record.output_tokens = 7, 3
            log_request(record, method="POST", path="/chat", endpoint="/chat", status=200 + n,
                        session_id="visitor-1", duration=0.25 + n)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    return [json.loads(line) for line in stream.getvalue().splitlines()] if hasattr(stream, "getvalue") else None


def _without_time(document):
    return {k: v for k, v in document.items() if k != "time"}


def test_a_request_line_written_directly_is_the_line_logging_writes():
    import os
    from unittest import mock

    from twin_server.telemetry import request_log

    direct = _log_request_lines(io.StringIO())
    with mock.patch.object(request_log, "_sole_json_handler", return_value=None):  # through logging
        through_logging = _log_request_lines(io.StringIO(), direct=False)
    assert [_without_time(d) for d in direct] == [_without_time(d) for d in through_logging]
    assert [list(d) for d in direct] == [list(d) for d in through_logging]  # the same keys in the same order
    first = direct[0]
    assert (first["level"], first["logger"], first["pid"], first["message"]) == (
        "INFO", "twin_server.request", os.getpid(), "POST /chat 200 250.0ms")
    assert first["backends"]["llm"] == {"backend": "offline", "calls": 1, "attempts": 1, "errors": 0, "ms": 12.3}
    assert (first["tokens_in"], first["tokens_out"], direct[1]["status"]) == (7, 3, 201)
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-12-01T20:00:00.000Z")


def test_a_request_line_written_directly_is_redacted_too():
    from twin_server.telemetry.redaction import register_secret, secrets

    register_secret("rid-0-and-a-secret-part")
    try:
        stream = io.StringIO()
        from twin_server.telemetry.request_log import log_request
        from twin_server.telemetry.usage import RequestRecord

        root = logging.getLogger()
        saved = root.handlers[:], root.level
        try:
            root.handlers[:] = []  # ours alone: the line is written directly
            configure_logging("json", "INFO", stream=stream)
            log_request(RequestRecord("rid-0-and-a-secret-part"), method="GET", path="/health", endpoint="/health",
                        status=200, session_id=None, duration=0.001)
        finally:
            root.handlers[:], _ = saved
            root.setLevel(saved[1])
        assert "secret-part" not in stream.getvalue() and json.loads(stream.getvalue())["request_id"] == "[redacted]"
    finally:
        secrets.clear()


@pytest.mark.parametrize("where", ["filter on the request logger", "handler on twin_server", "second root handler",
                                   "filter on our handler", "record factory", "text format"])
def test_whatever_else_is_configured_on_the_way_gets_the_request_line_through_logging(where):
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    def keep_filter(record):
        seen.append(record)
        return True

    request_logger, parent, root = (logging.getLogger(n) for n in ("twin_server.request", "twin_server", ""))
    default_factory = logging.getLogRecordFactory()
    undo = []
    stream = io.StringIO()
    try:
        if where == "filter on the request logger":
            request_logger.addFilter(keep_filter)
            undo.append(lambda: request_logger.removeFilter(keep_filter))
        elif where == "handler on twin_server":
            handler = Keep()
            parent.addHandler(handler)
            undo.append(lambda: parent.removeHandler(handler))
        elif where == "record factory":
            def factory(*args, **kwargs):
                record = default_factory(*args, **kwargs)
                seen.append(record)
                return record
            logging.setLogRecordFactory(factory)
            undo.append(lambda: logging.setLogRecordFactory(default_factory))
        if where == "text format":
            from twin_server.telemetry.request_log import log_request
            from twin_server.telemetry.usage import RequestRecord

            saved = root.handlers[:], root.level
            root.handlers[:] = []
            configure_logging("text", "INFO", stream=stream)
            undo.append(lambda: (root.handlers.__setitem__(slice(None), saved[0]), root.setLevel(saved[1])))
            log_request(RequestRecord("rid-0"), method="POST", path="/chat", endpoint="/chat", status=200,
                        session_id="visitor-1", duration=0.25)
            assert stream.getvalue().split(" ", 2)[2].startswith("INFO twin_server.request: POST /chat 200 250.0ms")
            return
        if where in ("second root handler", "filter on our handler"):
            saved = root.handlers[:], root.level
            root.handlers[:] = []
            configure_logging("json", "INFO", stream=stream)
            undo.append(lambda: (root.handlers.__setitem__(slice(None), saved[0]), root.setLevel(saved[1])))
            if where == "second root handler":
                root.addHandler(Keep())
            else:
                root.handlers[-1].addFilter(keep_filter)
            from twin_server.telemetry.request_log import log_request
            from twin_server.telemetry.usage import RequestRecord

            log_request(RequestRecord("rid-0"), method="POST", path="/chat", endpoint="/chat", status=200,
                        session_id="visitor-1", duration=0.25)
            documents = [json.loads(line) for line in stream.getvalue().splitlines()]
        else:
            documents = _log_request_lines(stream, count=1, direct=False)
        assert [d["request_id"] for d in documents] == ["rid-0"]  # our handler wrote it once
        assert [record.getMessage() for record in seen] == ["POST /chat 200 250.0ms"]
        assert seen[0].request_id == "rid-0" and seen[0].retries == 0
    finally:
        for step in reversed(undo):
            step()


def test_a_request_line_that_cannot_be_written_is_reported_as_logging_reports_it(capsys):
    import os

    read, write = os.pipe()
    os.close(read)  # a write to a pipe nobody reads: EPIPE (SIGPIPE is ignored under Python)
    stream = os.fdopen(write, "w")
    try:
        _log_request_lines(stream, count=1)
    finally:
        stream.close()
    reported = capsys.readouterr().err
    assert "--- Logging error ---" in reported and "BrokenPipeError" in reported
    assert "Arguments: ('POST', '/chat', 200, 250.0)" in reported  # the record it reports is the request line
    assert "in log_request" in reported  # written directly: the error came from there, not from emit
