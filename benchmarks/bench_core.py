"""Issue 2's benchmark, under gunicorn (gthread, ``gunicorn.conf.py``'s defaults), in one run.

1. POST /chat (offline LLM, filesystem storage) against a bare Flask JSON
   endpoint served the same way: requests per second and the ratio (target
   ≥ 0.5). The load generator shares the two cores with the servers, so the
   servers' own CPU time per request (from /proc) is reported too: its ratio
   is the capacity ratio on a machine where the clients live elsewhere. Slices
   alternate between the two servers, so other work on the machine hits both.
2. The cost of a turn on a session holding 10, 1,000 and 10,000 messages
   (target: 10,000 within 1.25× of 10).

Run: ``python -m benchmarks.bench_core``
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import requests

from benchmarks.load import measured, server
from twin_local.storage import FilesystemStore
from twin_server.types import Message

CLIENTS = 8
SLICES, SLICE_SECONDS = 6, 1.5
SIZES = (10, 1_000, 10_000)
#: The core alone: request logs, metrics and rate limits are measured by bench_production.
QUIET = {"TWIN_LOG_LEVEL": "WARNING", "TWIN_RATE_LIMIT": "off", "TWIN_METRICS": "off"}


def throughput(work: Path, log: Path) -> None:
    results: dict[str, list[dict[str, float]]] = {"bare": [], "chat": []}
    with contextlib.ExitStack() as stack:
        servers = {
            "bare": stack.enter_context(server("benchmarks.bare_app:app", {}, work / "bare", log)),
            "chat": stack.enter_context(server("wsgi:app", QUIET, work / "chat", log)),
        }
        for host, port, pid in servers.values():
            measured(host, port, pid, CLIENTS, 1.0)  # warm-up
        for n in range(SLICES):
            for name in ("bare", "chat") if n % 2 == 0 else ("chat", "bare"):
                outcome = measured(*servers[name], CLIENTS, SLICE_SECONDS)
                assert outcome["failures"] == 0, f"{name}: {outcome['failures']} requests failed; see {log}"
                results[name].append(outcome)
    median = {name: {key: statistics.median(r[key] for r in runs) for key in ("rps", "p50_ms", "p99_ms", "cpu_us")}
              for name, runs in results.items()}
    for name, m in median.items():
        print(f"{name:5} {m['rps']:8.1f} req/s  p50 {m['p50_ms']:6.2f} ms  p99 {m['p99_ms']:6.2f} ms  "
              f"server CPU {m['cpu_us']:6.0f} us/request")
    print(f"ratio chat/bare: {median['chat']['rps'] / median['bare']['rps']:.2f} of req/s, "
          f"{median['bare']['cpu_us'] / median['chat']['cpu_us']:.2f} by server CPU  (target >= 0.5)")


def turn_cost(work: Path, log: Path, rounds: int = 6, per_round: int = 40) -> None:
    data = work / "turns"
    store = FilesystemStore(data)
    stamp = Message("user", "seed").timestamp
    for size in SIZES:
        seed = [Message("user" if i % 2 == 0 else "assistant", f"stored message number {i} " * 4, stamp) for i in range(size)]
        store.append(f"turn-cost-{size}", seed)
    timings: dict[int, list[float]] = {size: [] for size in SIZES}
    with server("wsgi:app", QUIET, data, log) as (host, port, _):
        session = requests.Session()
        for _ in range(rounds):  # interleaved, so drift in machine load hits every size alike
            for size in SIZES:
                for _ in range(per_round):
                    started = time.perf_counter()
                    response = session.post(f"http://{host}:{port}/chat",
                                            json={"message": "Tell me about your projects", "session_id": f"turn-cost-{size}"})
                    timings[size].append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
    base = statistics.median(timings[SIZES[0]])
    for size in SIZES:
        median = statistics.median(timings[size])
        print(f"turn at {size:6d} stored messages: median {1000 * median:6.2f} ms  ratio to 10: {median / base:.2f}")
    print("target: 10,000 within 1.25x of 10")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-core-") as scratch:
        work = Path(scratch)
        throughput(work, work / "gunicorn.log")
        turn_cost(work, work / "gunicorn.log")


if __name__ == "__main__":
    main()
