"""What a worker's thread count does to a chat's server CPU: bare Flask and ``POST /chat`` at 2 x N threads.

The same set-up as ``bench_capacity`` (gunicorn.conf.py, logs, metrics, the rate limit and message cap on and
never refusing, wrk with 16 connections, server CPU per request from /proc), with only the threads per worker
changed. Every server runs at once and the runs alternate, round after round; medians. A run where one worker
took most of wrk's connections is repeated, as in ``bench_capacity``.

Why: every system call a request makes drops the GIL, and with more request threads waiting another one takes
it, a hand-off there and another back. This shows what that costs per request, next to bare Flask's own cost
at the same thread count.

Run: ``python -m benchmarks.bench_threads`` (about 3 minutes; BENCH_THREAD_COUNTS=8,2 BENCH_ROUNDS=5 BENCH_MIX).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_capacity import LIMIT_ON, balanced, measure
from benchmarks.load import server

THREAD_COUNTS = [int(n) for n in os.environ.get("BENCH_THREAD_COUNTS", "8,2").split(",")]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MIX = os.environ.get("BENCH_MIX", "returning")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    log = work / "servers.log"
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    redone = [0]
    with contextlib.ExitStack() as stack:
        servers = {}
        for threads in THREAD_COUNTS:
            shape = {"TWIN_WORKERS": "2", "TWIN_THREADS": str(threads), "TWIN_MAX_CHATS": str(threads)}
            servers["bare", threads] = stack.enter_context(
                server("benchmarks.bare_app:app", shape, work / f"bare-{threads}", log))
            servers["chat", threads] = stack.enter_context(
                server("wsgi:app", {**shape, **LIMIT_ON}, work / f"chat-{threads}", log))
        for running in servers.values():  # warm-up: imports, the persona, first files
            measure(*running, MIX, 1.0)
        for _ in range(ROUNDS):
            for key, running in servers.items():
                runs.setdefault(key, []).append(balanced(running, MIX, None, redone))
    print(f"({redone[0]} runs repeated because one worker had taken most of wrk's connections)")
    print(f"gunicorn.conf.py, 2 workers; wrk -c16, mix {MIX}; {ROUNDS} alternating rounds; medians")
    print(f"{'threads':>8} {'bare us/req':>12} {'chat us/req':>12} {'chat req/s':>11} {'capacity vs bare':>17}")
    for threads in THREAD_COUNTS:
        bare, chat = (statistics.median(r["cpu_us"] for r in runs[kind, threads]) for kind in ("bare", "chat"))
        rps = statistics.median(r["rps"] for r in runs["chat", threads])
        print(f"{threads:>8} {bare:>12.0f} {chat:>12.0f} {rps:>11.0f} {bare / chat:>17.2f}")


if __name__ == "__main__":
    main()
