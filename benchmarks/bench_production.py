"""Issue 8's benchmark: the recommended gunicorn set-up, and what observability and limits cost.

1. Sustained chats/s with 64 concurrent clients against an LLM that takes
   200 ms, under ``gunicorn.conf.py``'s own defaults (gthread, workers and
   threads as recommended) with logs, metrics and the rate limit on, against
   Little's law: 64 / 0.2 s = 320/s (target ≥ 90 %).
2. The cost of JSON request logs + Prometheus metrics + the rate limit (two
   windows, the shared-memory storage gunicorn.conf.py gives the workers) on the zero-latency path (an
   LLM that answers at once), against the same server with ``TWIN_METRICS=off``,
   ``TWIN_RATE_LIMIT=off``, ``TWIN_LOG_LEVEL=WARNING`` (target ≤ 15 %). Both
   servers run at once and short load slices alternate between them, so other
   work on the machine hits both alike; medians are compared. Besides chats/s
   it reports the servers' own CPU time per chat (from /proc), which the
   load generator sharing the two cores does not blur.

Run: ``python -m benchmarks.bench_production`` (about a minute; loopback only).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.load import cpu_seconds, load, server

LLM_SECONDS = 0.2
CLIENTS = 64
SUSTAINED_SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
ZERO_CLIENTS = 8
ZERO_SECONDS = 1.5
ZERO_SLICES = 10
APP = "tests.doubles.paced_app:app"  # the installed plugins plus the ``paced`` LLM
PACED = {"TWIN_LLM": "paced", "TWIN_PACED_TOKENS": "1"}
QUIET = {"TWIN_METRICS": "off", "TWIN_RATE_LIMIT": "off", "TWIN_LOG_LEVEL": "WARNING"}
# Two windows like the default, far above what the benchmark sends, so every chat pays for the check.
OBSERVED = {"TWIN_RATE_LIMIT": "1000000/minute;100000000/day"}


def sustained(work: Path, log: Path) -> None:
    limit = CLIENTS / LLM_SECONDS
    with server(APP, {**PACED, "TWIN_PACED_INTERVAL": str(LLM_SECONDS), **OBSERVED}, work / "data-slow", log) as (host, port, _):
        load(host, port, 8, 1.0)  # warm up: connections, persona, imports
        result = load(host, port, CLIENTS, SUSTAINED_SECONDS)
    print(f"\n1. {CLIENTS} clients, LLM {1000 * LLM_SECONDS:.0f} ms, {SUSTAINED_SECONDS:g} s, logs+metrics+limits on")
    print(f"   {result['rps']:7.1f} chats/s = {100 * result['rps'] / limit:5.1f} % of Little's law "
          f"({limit:.0f}/s; target >= 90 %)")
    print(f"   p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, {result['requests']} chats, "
          f"{result['failures']} failed")


def overhead(work: Path, log: Path) -> None:
    rates: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(server(APP, {**PACED, "TWIN_PACED_INTERVAL": "0", **env}, work / f"data-{name}", log))
            for name, env in (("on", OBSERVED), ("off", QUIET))
        }
        for host, port, _ in servers.values():
            load(host, port, ZERO_CLIENTS, 1.0)
        for slice_no in range(ZERO_SLICES):
            for name in ("on", "off") if slice_no % 2 == 0 else ("off", "on"):
                host, port, pid = servers[name]
                before = cpu_seconds(pid)
                outcome = load(host, port, ZERO_CLIENTS, ZERO_SECONDS)
                after = cpu_seconds(pid)
                assert outcome["failures"] == 0, f"{outcome['failures']} chats failed; see {log}"
                rates[name].append(outcome["rps"])
                if before is not None and after is not None:
                    cpu[name].append(1e6 * (after - before) / outcome["requests"])
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    print(f"\n2. zero-latency LLM, {ZERO_CLIENTS} clients, {ZERO_SLICES} alternating slices of {ZERO_SECONDS:g} s each")
    for name, label in (("on", "logs+metrics+limits on"), ("off", "all three off")):
        line = f"   {label:23}: {statistics.median(rates[name]):7.1f} chats/s (median; best {max(rates[name]):.1f})"
        if cpu[name]:
            line += f", server CPU {statistics.median(cpu[name]):5.0f} us/chat"
        print(line)
    print(f"   added cost: {100 * (1 - on / off):5.1f} % of throughput (target <= 15 %)", end="")
    if cpu["on"] and cpu["off"]:
        print(f"; {100 * (statistics.median(cpu['on']) / statistics.median(cpu['off']) - 1):.1f} % more server CPU per chat")
    else:
        print()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-production-") as scratch:
        work = Path(scratch)
        log = work / "gunicorn.log"
        print(f"gunicorn.conf.py defaults on {os.cpu_count()} CPUs; client and servers share this machine; 127.0.0.1 only")
        sustained(work, log)
        overhead(work, log)


if __name__ == "__main__":
    main()
