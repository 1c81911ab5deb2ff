"""Where a chat's CPU goes: the WSGI app called directly, production settings, each part switched off alone.

Each row builds the app in a fresh process with the settings a deployment
has (JSON request log written to a file, multiprocess metrics, the shm rate
limit and message cap on and never refusing, rolling summaries on), then
calls ``POST /chat`` straight through WSGI (no server, no sockets) and
reports the process's CPU time per request (``time.process_time``). A row
that switches a part off gives that part's cost as the difference from
``chat``. ``bare`` is the bare Flask endpoint of ``benchmarks/bare_app.py``
and ``health`` our ``GET /health`` (Flask plus the platform every request
pays), both in the same run. Rows alternate over the rounds; medians.

``BENCH_LEDGER_THREADS=8`` makes the measured requests from that many threads at once, as a
gunicorn worker's request threads do (what the GIL hand-offs at every system call cost);
``BENCH_LEDGER_ONE_AT_A_TIME=1`` then lets one of them call the app at a time (a lock around it).

Run: ``python -m benchmarks.bench_ledger`` (about a minute; BENCH_LEDGER_REQUESTS, BENCH_ROUNDS).
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from benchmarks.wrk import varied_questions

REQUESTS = int(os.environ.get("BENCH_LEDGER_REQUESTS", "3000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
#: Requests before the measured ones: 64 returning visitors reach about 20 turns each, past the history
#: window, so summaries are being made as in a long-running server.
WARM_UP = int(os.environ.get("BENCH_LEDGER_WARMUP", "1300"))
THREADS = int(os.environ.get("BENCH_LEDGER_THREADS", "1"))
ONE_AT_A_TIME = os.environ.get("BENCH_LEDGER_ONE_AT_A_TIME", "") == "1"
ON = {"TWIN_RATE_LIMIT": "100000000/minute;1000000000/day", "TWIN_SESSION_MAX_MESSAGES": "100000000"}
#: (row, mix, settings): a mix is ``new`` (no session id), ``returning`` (64 visitors asking one question),
#: ``varied`` (those visitors asking ever other questions: benchmarks/wrk.py), ``health`` or ``bare``.
ROWS = (
    ("bare Flask endpoint", "bare", {}),
    ("GET /health", "health", {}),
    ("chat, new sessions", "new", {}),
    ("chat, returning", "returning", {}),
    ("  summaries off", "returning", {"TWIN_SUMMARY_EVERY": "0"}),
    ("  rate limit and cap off", "returning", {"TWIN_RATE_LIMIT": "off", "TWIN_SESSION_MAX_MESSAGES": "off"}),
    ("  metrics off", "returning", {"TWIN_METRICS": "off"}),
    ("  request log off", "returning", {"TWIN_LOG_LEVEL": "WARNING"}),
    ("chat, varied", "varied", {}),
    ("  owner events off", "varied", {"TWIN_OWNER_EVENTS": "false"}),
)
#: What a part row's cost is the difference from: the chat of its mix.
CHAT_OF = {"returning": "chat, returning", "varied": "chat, varied"}


def _environ(method: str, path: str, body: bytes) -> dict:
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1:8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body))}


def child(mix: str, requests: int) -> None:
    """In a fresh process: build the app as configured, warm it up, print the CPU per request."""
    if mix == "bare":
        from benchmarks.bare_app import app
    else:
        from twin_server.app import create_app
        from twin_server.telemetry.logs import configure_logging

        configure_logging()
        app = create_app()

    questions = varied_questions()

    def call(n: int) -> None:
        if mix == "health":
            environ = _environ("GET", "/health", b"")
        else:
            body = {"message": questions[n % len(questions)] if mix == "varied" else "What do you do?"}
            if mix in ("returning", "varied"):
                body["session_id"] = f"bench-visitor-{n % 64:04d}"
            environ = _environ("POST", "/chat", json.dumps(body).encode())
        status = []
        result = app(environ, lambda line, headers, exc_info=None: status.append(line))
        b"".join(result)
        getattr(result, "close", lambda: None)()
        if not status[0].startswith("200"):
            raise RuntimeError(f"{mix}: {status[0]}")

    for n in range(WARM_UP if mix in ("new", "returning", "varied") else 300):
        call(n)
    started = time.process_time()
    if THREADS == 1:
        for n in range(requests):
            call(n)
    else:
        _from_threads(call, requests)
    print(json.dumps({"cpu_us": 1e6 * (time.process_time() - started) / requests}))


def _from_threads(call: Callable[[int], None], requests: int) -> None:
    """``call(0 .. requests-1)`` from ``THREADS`` threads at once (one at a time with ``ONE_AT_A_TIME``)."""
    numbers, take, one = iter(range(requests)), threading.Lock(), threading.Lock()
    failed: list[BaseException] = []

    def work() -> None:
        while not failed:
            with take:
                n = next(numbers, None)
            if n is None:
                return
            try:
                if ONE_AT_A_TIME:
                    with one:
                        call(n)
                else:
                    call(n)
            except BaseException as exc:  # re-raised in the main thread: the run is void
                failed.append(exc)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]


def measure(mix: str, settings: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as scratch:
        os.makedirs(os.path.join(scratch, "metrics"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        env.update({"TWIN_DATA_DIR": os.path.join(scratch, "data"), "TWIN_LOG_FORMAT": "json",
                    "PROMETHEUS_MULTIPROC_DIR": os.path.join(scratch, "metrics"),
                    "TWIN_RATE_LIMIT_STORAGE": "shm:///" + os.path.join(scratch, "limits.shm"), **ON, **settings})
        with open(os.path.join(scratch, "log"), "wb") as log:
            done = subprocess.run([sys.executable, "-m", "benchmarks.bench_ledger", "--child", mix, str(REQUESTS)],
                                  env=env, stdout=subprocess.PIPE, stderr=log, check=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])["cpu_us"]


def main() -> None:
    runs: dict[str, list[float]] = {row: [] for row, _, _ in ROWS}
    for n in range(ROUNDS):
        for row, mix, settings in ROWS[n % len(ROWS):] + ROWS[: n % len(ROWS)]:
            runs[row].append(measure(mix, settings))
    median = {row: statistics.median(values) for row, values in runs.items()}
    mixes = {row: mix for row, mix, _ in ROWS}
    threads = f", from {THREADS} threads{' one at a time' if ONE_AT_A_TIME else ''}" if THREADS > 1 else ""
    print(f"the app called through WSGI, production settings; {REQUESTS} requests a run{threads}, {ROUNDS} rounds, "
          "medians")
    print(f"{'':28} {'CPU us/request':>15} {'vs bare':>8} {'part costs':>11}")
    for row, value in median.items():
        part = f"{median[CHAT_OF[mixes[row]]] - value:9.0f} us" if row.startswith("  ") else ""
        print(f"{row:28} {value:15.0f} {value / median['bare Flask endpoint']:8.1f} {part:>11}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
