"""What the benchmarks share: a gunicorn server process, its CPU time, a closed-loop load (loopback only)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from tests.doubles.servers import ROOT, free_port, wait_until_up

Body = Callable[[int, int], Mapping[str, object]]


def same_session(client: int, i: int) -> Mapping[str, object]:
    """Each client keeps one session, so history stays within the window."""
    return {"message": "What do you do?", "session_id": f"bench-client-{client:04d}"}


@contextlib.contextmanager
def server(app: str, env: Mapping[str, str], data_dir: Path, log: Path, root: Path = ROOT) -> Iterator[tuple[str, int, int]]:
    """``gunicorn APP`` with nothing else on its command line: gunicorn.conf.py decides. Yields (host, port, pid).

    ``root``: the checkout to serve (its gunicorn.conf.py, wsgi.py and packages come first on the path).
    """
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    full_env.update({"TWIN_BIND": f"127.0.0.1:{port}", "TWIN_DATA_DIR": str(data_dir), **env})
    if root != ROOT:
        full_env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "plugins"), str(ROOT)])
    with open(log, "ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", app], cwd=root, env=full_env,
                                   stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_until_up(f"http://127.0.0.1:{port}/health", process, output=log)
            yield "127.0.0.1", port, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        each = todo.pop()
        found.append(each)
        for task in Path(f"/proc/{each}/task").iterdir():
            todo.extend(map(int, (task / "children").read_text().split()))
    return found


def cpu_by_process(pid: int) -> dict[int, float]:
    """User + system CPU seconds of a server process and each of its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for each in _descendants(pid):
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        seconds[each] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a server process and all its descendants, or None (no /proc)."""
    try:
        return sum(cpu_by_process(pid).values())
    except OSError:
        return None


def load(host: str, port: int, clients: int, seconds: float, body: Body = same_session) -> dict[str, float]:
    """Closed loop: each client (one keep-alive connection) sends its next chat when the last is answered."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(n: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        headers = {"Content-Type": "application/json"}
        mine, failed, i = [], 0, 0
        start.wait()
        while time.monotonic() < stop_at[0]:
            began = time.perf_counter()
            connection.request("POST", "/chat", json.dumps(body(n, i)), headers)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - began)
            failed += response.status != 200
            i += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            failures[0] += failed

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.monotonic() + seconds
    began = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "failures": failures[0],
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def measured(host: str, port: int, pid: int, clients: int, seconds: float, body: Body = same_session) -> dict[str, float]:
    """``load``, plus the server's CPU time per request (``cpu_us``; the client sharing the cores does not blur it)."""
    before = cpu_seconds(pid)
    outcome = load(host, port, clients, seconds, body)
    after = cpu_seconds(pid)
    if before is not None and after is not None and outcome["requests"]:
        outcome["cpu_us"] = 1e6 * (after - before) / outcome["requests"]
    return outcome
