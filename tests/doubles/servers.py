"""Real server processes for tests: gunicorn on a free loopback port."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30.0, output: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = output.read_text(errors="replace") if output else process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"server exited with {process.returncode}: {said}")
        try:
            requests.get(url, timeout=1)
            return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or no worker booted yet
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up in {timeout}s")


@dataclasses.dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen

    def workers(self) -> list[int]:
        """The pids of the gunicorn master's live children (Linux /proc)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:  # the process ended while we looked
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    pids.append(int(entry.name))
        return pids


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@contextlib.contextmanager
def gunicorn(
    env: Mapping[str, str],
    *,
    app: str = "wsgi:app",
    workers: int = 2,
    threads: int = 4,
    extra_args: tuple[str, ...] = (),
    log_path: Path | None = None,
) -> Iterator[str]:
    """Run ``gunicorn`` as a real process on 127.0.0.1; yields its base URL."""
    with gunicorn_server(env, app=app, workers=workers, threads=threads, extra_args=extra_args,
                         log_path=log_path) as server:
        yield server.url


@contextlib.contextmanager
def gunicorn_server(
    env: Mapping[str, str],
    *,
    app: str = "wsgi:app",
    workers: int = 2,
    threads: int = 4,
    extra_args: tuple[str, ...] = (),
    log_path: Path | None = None,
) -> Iterator[Server]:
    """``gunicorn``, yielding its URL and its master process."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", app,
        "--bind", f"127.0.0.1:{port}",
        "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
        "--graceful-timeout", "5",
        *extra_args,
    ]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    full_env.update(env)
    # Output goes to a file, never to a pipe nobody reads: the app logs a line per
    # request, and a full pipe would block the server.
    scratch = None if log_path else tempfile.TemporaryDirectory(prefix="gunicorn-log-")
    output = log_path or Path(scratch.name) / "output.log"
    log = open(output, "wb")
    process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/health", process, output=output)
        yield Server(url, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if scratch is not None:
            scratch.cleanup()
