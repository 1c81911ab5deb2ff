"""nginx as a real process on a loopback port, running the front documented in docs/deploying.md.

The documented ``server`` block (after the ``<!-- nginx-front -->`` marker) is
used as printed, with three changes only: it listens on a free 127.0.0.1 port
without TLS, its upstream is the test's gunicorn, and the process keeps its
pid, logs and temporary files in the test's own directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.doubles.servers import ROOT, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MARKER = "<!-- nginx-front -->"


def documented_front() -> str:
    text = (ROOT / "docs" / "deploying.md").read_text()
    return re.search(r"```nginx\n(.*?)```", text.split(MARKER, 1)[1], re.S).group(1)


def config(upstream: str, port: int, work: Path) -> str:
    block = documented_front()
    block, listens = re.subn(r"listen 443 ssl http2;", f"listen 127.0.0.1:{port};", block)
    block, upstreams = re.subn(r"server 127\.0\.0\.1:8000;", f"server {urlsplit(upstream).netloc};", block)
    if (listens, upstreams) != (1, 1):
        raise AssertionError("the documented nginx block no longer has the lines this test rewrites")
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {work}/{kind};" for kind in kinds)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the test's private directory
    return (f"{user}daemon off;\nworker_processes 1;\npid {work}/nginx.pid;\nerror_log {work}/error.log warn;\n"
            f"events {{ worker_connections 1024; }}\nhttp {{\n    access_log off;\n{temp}\n{block}\n}}\n")


@contextlib.contextmanager
def nginx_front(upstream: str, work: Path) -> Iterator[str]:
    """nginx in front of ``upstream`` (a gunicorn URL); yields its own base URL."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(config(upstream, port, work))
    log = open(work / "output.log", "wb")
    process = subprocess.Popen([NGINX, "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited with {process.returncode}: "
                                   f"{(work / 'error.log').read_text(errors='replace')}")
            try:
                requests.get(url + "/health", timeout=1)
                break
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
