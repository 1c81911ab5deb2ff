"""Issue 16's benchmark: what a chat turn costs under production defaults, next to a bare Flask endpoint.

Every server runs under ``gunicorn.conf.py`` with 2 workers x 8 threads (the
FastAPI comparison under uvicorn with 2 workers): JSON request logs, metrics
and the rate limit on (shm storage, a limit far above the load, so every chat
pays for the check and none is refused). wrk drives them (16 connections,
one thread) with two body mixes: ``new`` (no session id: every chat starts a
session) and ``returning`` (64 visitors taking turns), and for the chat
``varied`` (those visitors asking ever other questions: benchmarks/wrk.py). Runs alternate between
the servers, round after round, so drift on the machine hits all alike; the
medians are reported.

The capacity figure is **server CPU per request** (utime + stime of master and
workers from /proc, before and after each run): wrk shares the two cores, so
req/s undersells the servers alike, but CPU per request does not depend on
where the client runs. Its ratio to bare Flask is the share of a bare
endpoint's capacity a chat keeps. wrk's own CPU is reported so you can see it
is not the bottleneck.

Rows:
  bare            a bare Flask JSON endpoint (benchmarks/bare_app.py): the ceiling
  chat            POST /chat, offline LLM, filesystem store
  chat, quiet     the same with logs (WARNING), metrics and rate limit off: their cost, from
                  pairs (each round measures a mix's chat and quiet rows back to back, in turn
                  order, so drift between the two is small): the median of the rounds' shares
  openai          POST /chat, the ``openai`` backend against an instant local server
  fastapi         benchmarks/fastapi_app.py on uvicorn, the same SDK call, against that server
Then the 200 ms slow LLM against Little's law (64 connections, gunicorn.conf.py's own
threads). The offline ranking per persona size is bench_offline's.

Run: ``python -m benchmarks.bench_capacity`` (about 3 minutes; BENCH_SECONDS, BENCH_ROUNDS).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any
from pathlib import Path

from benchmarks import instant_openai
from benchmarks.load import cpu_by_process, cpu_seconds, launched, server
from benchmarks.wrk import run_wrk
from tests.doubles.servers import free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CONNECTIONS = 16
KEY = "sk-bench-capacity-0000"
#: The admission cap (twin_server.http.inflight) stays on, at the thread count: no thread is kept for
#: probes (there are none here), so a worker that wrk gave more connections than threads queues them.
SHAPE = {"TWIN_WORKERS": "2", "TWIN_THREADS": "8", "TWIN_MAX_CHATS": "8"}
#: Two windows like the default, and the per-session message cap, far above what the benchmark sends: on,
#: never refusing (64 returning visitors pass the default cap of 500 messages each within a run).
LIMIT_ON = {"TWIN_RATE_LIMIT": "100000000/minute;1000000000/day", "TWIN_SESSION_MAX_MESSAGES": "100000000"}
QUIET = {"TWIN_LOG_LEVEL": "WARNING", "TWIN_METRICS": "off", "TWIN_RATE_LIMIT": "off", "TWIN_SESSION_MAX_MESSAGES": "off"}
MIN_BALANCE = 0.5
#: BENCH_SERVERS=bare,chat runs only those rows (for a quick before/after of one change).
SERVERS = os.environ.get("BENCH_SERVERS", "bare,chat,quiet,openai,fastapi").split(",")
#: BENCH_COMPARE=/path/to/another/checkout adds its chat rows (before/after in one run).
COMPARE = os.environ.get("BENCH_COMPARE")
if COMPARE:
    SERVERS += ["compare", "compare-openai"] if "openai" in SERVERS else ["compare"]
SLOW_LLM_SECONDS, SLOW_CONNECTIONS, SLOW_RUN_SECONDS = 0.2, 64, 8.0
#: (row, server, mix)
ROWS = (
    ("bare", "bare", "new"),
    ("chat new", "chat", "new"),
    ("chat returning", "chat", "returning"),
    ("chat varied", "chat", "varied"),
    ("chat new, quiet", "quiet", "new"),
    ("chat returning, quiet", "quiet", "returning"),
    ("openai new", "openai", "new"),
    ("compare: chat new", "compare", "new"),
    ("compare: chat returning", "compare", "returning"),
    ("compare: chat varied", "compare", "varied"),
    ("compare: openai new", "compare-openai", "new"),
    ("fastapi new", "fastapi", "new"),
)


def uvicorn(app: str, env: Mapping[str, str], log: Path) -> contextlib.AbstractContextManager[tuple[str, int, int]]:
    """``uvicorn APP --workers 2`` on a free loopback port; yields (host, port, pid)."""
    port = free_port()
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}, **env}
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    return launched(command, port, full_env, log)


def measure(host: str, port: int, pid: int, mix: str, seconds: float, connections: int = CONNECTIONS,
            extra_pid: int | None = None) -> dict[str, float]:
    """One wrk run with the server's CPU time per request (``cpu_us``), and the instant server's when given.

    ``balance`` is the less busy worker's CPU over the busier one's: wrk opens its
    connections at once and the workers race to accept them, so now and then one
    worker gets nearly all of them and the run measures a one-worker server.
    """
    before, extra_before = cpu_by_process(pid), cpu_seconds(extra_pid) if extra_pid else None
    outcome = run_wrk(f"http://{host}:{port}", mix=mix, seconds=seconds, connections=connections)
    after, extra_after = cpu_by_process(pid), cpu_seconds(extra_pid) if extra_pid else None
    spent = {p: after[p] - before.get(p, 0.0) for p in after}
    requests = max(1, outcome["requests"])
    outcome["cpu_us"] = 1e6 * sum(spent.values()) / requests
    busiest = sorted(spent.values(), reverse=True)[:2]
    outcome["balance"] = busiest[1] / busiest[0] if len(busiest) == 2 and busiest[0] > 0 else 1.0
    if extra_pid:
        outcome["upstream_cpu_us"] = 1e6 * (extra_after - extra_before) / requests
    outcome["client_pct"] = 100 * outcome["client_cpu_s"] / outcome["wall_s"]
    return outcome


def balanced(server: tuple[str, int, int], mix: str, extra_pid: int | None, redone: list[int]) -> dict[str, float]:
    """``measure``, repeated (up to 4 times) while one worker took less than half the other's load."""
    for _ in range(4):
        outcome = measure(*server, mix, SECONDS, extra_pid=extra_pid)
        if outcome["balance"] >= MIN_BALANCE:
            break
        redone[0] += 1
    return outcome


def paired(order: list[tuple[str, str, str]], n: int) -> list[tuple[str, str, str]]:
    """``order`` with each quiet row moved next to its chat row: after it in even rounds, before it in odd ones."""
    quiet = {row[: -len(", quiet")]: (row, name, mix) for row, name, mix in order if row.endswith(", quiet")}
    out: list[tuple[str, str, str]] = []
    for entry in order:
        if entry[0].endswith(", quiet"):
            continue
        partner = quiet.get(entry[0])
        out += [entry] if partner is None else [entry, partner] if n % 2 == 0 else [partner, entry]
    return out


def parts_share(runs: dict[str, list[dict[str, float]]], mix: str) -> list[float]:
    """Per round, the logs + metrics + rate limit share of the chat's CPU (pairs measured back to back)."""
    on, off = runs.get(f"chat {mix}", []), runs.get(f"chat {mix}, quiet", [])
    return [100 * (a["cpu_us"] - b["cpu_us"]) / a["cpu_us"] for a, b in zip(on, off)]


def throughput(work: Path, log: Path, names: list[str] = SERVERS) -> dict[str, dict[str, Any]]:
    """Every row of ``names``' servers, alternating; the medians by row (and ``shares``: ``parts_share``)."""
    rows = [row for row in ROWS if row[1] in names]
    runs: dict[str, list[dict[str, float]]] = {row: [] for row, _, _ in rows}
    redone = [0]
    with contextlib.ExitStack() as stack:
        base_url, upstream = stack.enter_context(instant_openai.running())
        openai_env = {"TWIN_LLM": "openai", "TWIN_OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY}
        starts = {
            "bare": lambda: server("benchmarks.bare_app:app", {**SHAPE}, work / "bare", log),
            "chat": lambda: server("wsgi:app", {**SHAPE, **LIMIT_ON}, work / "chat", log),
            "quiet": lambda: server("wsgi:app", {**SHAPE, **QUIET}, work / "quiet", log),
            "openai": lambda: server("wsgi:app", {**SHAPE, **LIMIT_ON, **openai_env}, work / "openai", log),
            "compare": lambda: server("wsgi:app", {**SHAPE, **LIMIT_ON}, work / "compare", log, Path(COMPARE)),
            "compare-openai": lambda: server("wsgi:app", {**SHAPE, **LIMIT_ON, **openai_env}, work / "compare-openai",
                                             log, Path(COMPARE)),
            "fastapi": lambda: uvicorn("benchmarks.fastapi_app:app", {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY}, log),
        }
        servers = {name: stack.enter_context(starts[name]()) for name in names}
        for _, name, mix in rows:  # warm-up: imports, connections, the persona, first files
            measure(*servers[name], mix, 1.0)
        for n in range(ROUNDS):
            for row, name, mix in paired(rows[n % len(rows):] + rows[: n % len(rows)], n):
                upstream_pid = upstream if name in ("openai", "fastapi", "compare-openai") else None
                outcome = balanced(servers[name], mix, upstream_pid, redone)
                if outcome["failures"]:
                    raise RuntimeError(f"{row}: {outcome['failures']} requests failed; see {log}")
                runs[row].append(outcome)
    print(f"({redone[0]} runs repeated because one worker had taken most of wrk's connections)")
    keys = ("rps", "cpu_us", "p50_ms", "p99_ms", "client_pct", "upstream_cpu_us")
    medians = {row: {k: statistics.median(r[k] for r in results) for k in keys if k in results[0]}
               for row, results in runs.items()}
    for mix in ("new", "returning"):
        if shares := parts_share(runs, mix):
            medians[f"chat {mix}"]["shares"] = shares
    return medians


def report(median: dict[str, dict[str, Any]]) -> None:
    bare = median["bare"]  # always measured: every ratio is to it
    print(f"gunicorn.conf.py, 2 workers x 8 threads; wrk -t1 -c{CONNECTIONS}; {ROUNDS} alternating rounds of "
          f"{SECONDS:g} s; medians; {os.cpu_count()} CPUs shared by client and servers")
    print(f"{'':22} {'req/s':>8} {'vs bare':>8} {'server CPU':>11} {'capacity':>9} {'p50 ms':>7} {'p99 ms':>7}"
          f" {'wrk CPU':>8} {'upstream':>9}")
    print(f"{'':22} {'':>8} {'req/s':>8} {'us/request':>11} {'vs bare':>9} {'':>7} {'':>7} {'% core':>8}"
          f" {'us/req':>9}")
    for row, m in median.items():
        upstream = f"{m['upstream_cpu_us']:9.0f}" if "upstream_cpu_us" in m else f"{'':>9}"
        print(f"{row:22} {m['rps']:8.0f} {m['rps'] / bare['rps']:8.2f} {m['cpu_us']:11.0f}"
              f" {bare['cpu_us'] / m['cpu_us']:9.2f} {m['p50_ms']:7.2f} {m['p99_ms']:7.2f} {m['client_pct']:8.0f}"
              f" {upstream}")
    print("targets: chat (both mixes) capacity >= 0.50; openai >= 0.30 and more req/s than fastapi")
    for mix in [m for m in ("new", "returning") if "shares" in median.get(f"chat {m}", {})]:
        shares = median[f"chat {mix}"]["shares"]
        print(f"logs + metrics + rate limit, {mix:9}: {statistics.median(shares):5.1f} % of the chat's server CPU "
              f"(median of {len(shares)} pairs, {min(shares):.1f} to {max(shares):.1f}; target <= 15 %)")


def slow_llm(work: Path, log: Path) -> None:
    """Chats waiting on a 200 ms LLM, gunicorn.conf.py's own workers and threads, logs/metrics/limit on."""
    env = {"TWIN_LLM": "paced", "TWIN_PACED_TOKENS": "1", "TWIN_PACED_INTERVAL": str(SLOW_LLM_SECONDS),
           "TWIN_MAX_CHATS": "64", **LIMIT_ON}  # gunicorn.conf.py's 64 threads, all of them for chats
    limit = SLOW_CONNECTIONS / SLOW_LLM_SECONDS
    with server("tests.doubles.paced_app:app", env, work / "slow", log) as (host, port, pid):
        measure(host, port, pid, "new", 1.0, SLOW_CONNECTIONS)
        outcome = measure(host, port, pid, "new", SLOW_RUN_SECONDS, SLOW_CONNECTIONS)
    print(f"\nslow LLM ({1000 * SLOW_LLM_SECONDS:.0f} ms), wrk -c{SLOW_CONNECTIONS}, {SLOW_RUN_SECONDS:g} s: "
          f"{outcome['rps']:.1f} chats/s = {100 * outcome['rps'] / limit:.1f} % of Little's law ({limit:.0f}/s; "
          f"target >= 90 %); p50 {outcome['p50_ms']:.0f} ms, p99 {outcome['p99_ms']:.0f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as scratch:
        work = Path(scratch)
        log = work / "servers.log"
        started = time.monotonic()
        report(throughput(work, log))
        if os.environ.get("BENCH_SLOW", "on") != "off":
            slow_llm(work, log)
        print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
