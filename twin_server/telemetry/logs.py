"""Structured logs: one JSON object per line in production, readable text in development.

``TWIN_LOG_FORMAT`` is ``json`` or ``text`` (``gunicorn.conf.py`` makes it
``json``; ``text`` otherwise) and ``TWIN_LOG_LEVEL`` a level name (``INFO``).
Every HTTP request ends in one line from the ``twin_server.request`` logger
(``request_log.log_request``) with its method, path, url rule, status, duration, request
and session ids, per-backend timings, retries and tokens. Message text,
request bodies, headers and query strings are never logged by it; other lines
logged during a request carry its ``request_id``.

``configure_logging`` gives the root logger its one handler; ``wsgi.py``, the
CLI and ``gunicorn.conf.py`` (whose logger class routes gunicorn's own lines
through it too) call it. Every line that handler writes, from any logger
(httpx, openai, botocore included), has each registered secret value replaced
by ``[redacted]`` (``twin_server.telemetry.redaction``). A JSON line escapes
U+2028, U+2029 and U+0085 too, so a reader splitting on ``str.splitlines()``
sees one record per line.
"""

from __future__ import annotations

import json
import logging
import os
import select
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

import orjson

from twin_server.errors import ConfigurationError
from twin_server.telemetry import usage as accounting
from twin_server.telemetry.redaction import secrets
from twin_server.types import LINE_BREAK_ESCAPES

__all__ = ["JsonFormatter", "RedactingHandler", "TextFormatter", "configure_logging", "json_line", "log_settings"]

FORMATS = ("json", "text")
REQUEST_LOGGER = "twin_server.request"
_MARK = "_twin_server_handler"
_FIELDS = "_twin_fields"  # log_request's fields, handed to the formatter as one dict
#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def log_settings(environ: Mapping[str, str] | None = None, default_format: str = "text") -> tuple[str, str]:
    """(format, level) from ``TWIN_LOG_FORMAT`` and ``TWIN_LOG_LEVEL``; ConfigurationError when wrong."""
    environ = os.environ if environ is None else environ
    fmt = (environ.get("TWIN_LOG_FORMAT") or default_format).strip().lower()
    level = (environ.get("TWIN_LOG_LEVEL") or "INFO").strip().upper()
    problems = []
    if fmt not in FORMATS:
        problems.append(f"TWIN_LOG_FORMAT must be json or text, not {fmt!r}")
    if not isinstance(logging.getLevelName(level), int):
        problems.append(f"TWIN_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {level!r}")
    if problems:
        raise ConfigurationError("; ".join(problems))
    return fmt, level


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    fields = record.__dict__.get(_FIELDS)
    if fields is None:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    if "request_id" not in fields:
        current = accounting.current()
        if current is not None and current.request_id:
            fields["request_id"] = current.request_id
    return fields


_JSON = json.JSONEncoder(default=str, ensure_ascii=False)  # for what orjson refuses (ints beyond 64 bits)
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def _dumps(document: dict[str, Any]) -> str:
    """orjson: a tenth of the stdlib encoder's time for a request line (it was 40 % of the line's cost)."""
    try:
        return orjson.dumps(document, default=str, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return _JSON.encode(document)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, pid, message, then the record's extra fields."""

    #: (second, its text): one tuple, so a thread never reads one second's text with another's number
    #: (lines are formatted outside the handler's lock).
    _cached: tuple[int, str] = (-1, "")

    def timestamp(self, created: float) -> str:
        """``created`` as the line's UTC time, to the millisecond."""
        second = int(created)
        cached = self._cached
        if cached[0] != second:  # one strftime per second, not per line
            cached = self._cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self.timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            document.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json_line(document)


def json_line(document: dict[str, Any]) -> str:
    """``document`` as one JSON line (the line breaks ``str.splitlines`` sees escaped too)."""
    line = _dumps(document)
    return line if line.isascii() else line.translate(LINE_BREAK_ESCAPES)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` for a developer's terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return line
        head, newline, trace = line.partition("\n")
        pairs = " ".join(f"{key}={_flat(value)}" for key, value in extras.items() if value is not None)
        return f"{head}  {pairs}{newline}{trace}"


def _flat(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


class RedactingHandler(logging.StreamHandler):
    """The root handler: each formatted line, secrets replaced, in one write.

    On a stream with a file descriptor (stderr under gunicorn: a file, a pipe,
    the journal) a line of up to ``PIPE_BUF`` bytes goes out in one ``os.write``
    without the handler's lock: such a write is never interleaved with another,
    and request threads do not queue on the lock while one of them is in the
    system call. Longer lines, and streams without a descriptor, take the lock.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        self._fd = _descriptor(self.stream)

    def setStream(self, stream: IO[str]) -> IO[str] | None:
        old = super().setStream(stream)
        self._fd = _descriptor(self.stream)
        return old

    def format(self, record: logging.LogRecord) -> str:
        return secrets.redact(super().format(record))

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write(self, line: str) -> None:
        """Write one formatted (and redacted) line and the terminator; raises what the write raises."""
        line += self.terminator
        if self._fd is not None:
            data = line.encode("utf-8", "backslashreplace")
            if len(data) <= select.PIPE_BUF:
                _write_all(self._fd, data)
                return
        with self.lock:
            if self._fd is not None:
                _write_all(self._fd, data)
            else:
                self.stream.write(line)
                self.stream.flush()


def _descriptor(stream: IO[str]) -> int | None:
    try:
        stream.flush()  # what was written through the stream's buffer goes first
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.StringIO and friends
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def configure_logging(fmt: str | None = None, level: str | None = None, *, stream: IO[str] | None = None) -> None:
    """Give the root logger one handler in the chosen format (replacing ours from an earlier call).

    Leaves a root logger that someone else already configured (a test harness,
    an embedding application) alone unless ``fmt`` is given.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _MARK, False)]
    if fmt is None and root.handlers and not ours:
        return
    env_fmt, env_level = log_settings()
    handler = RedactingHandler(stream or sys.stderr)
    handler.setFormatter(FORMATTERS[fmt or env_fmt]())
    setattr(handler, _MARK, True)
    for old in ours:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or env_level)
