"""What the benchmarks share: a gunicorn server process and its CPU time (loopback only; wrk drives it, see wrk.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.doubles.servers import ROOT, free_port, wait_until_up


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
    with launched([sys.executable, "-m", "gunicorn", app], port, full_env, log, root) as running:
        yield running


@contextlib.contextmanager
def launched(command: list[str], port: int, env: Mapping[str, str], log: Path,
             cwd: Path = ROOT) -> Iterator[tuple[str, int, int]]:
    """``command`` run until its ``/health`` on ``port`` answers, its output appended to ``log``; stopped with
    SIGTERM on exit. Yields (host, port, pid)."""
    with open(log, "ab") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
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
            try:
                todo.extend(map(int, (task / "children").read_text().split()))
            except FileNotFoundError:
                continue  # a thread that ended while we listed them had no children to count
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
