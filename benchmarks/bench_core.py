"""Issue 2's benchmark, under gunicorn (gthread), in one run.

1. POST /chat (offline LLM, filesystem storage) against a bare Flask JSON
   endpoint: requests per second and the ratio (target ≥ 0.5).
2. The cost of a turn on a session holding 10, 1,000 and 10,000 messages
   (target: 10,000 within 1.25× of 10).

Run: ``python -m benchmarks.bench_core`` (``BENCH_SECONDS`` sets the load duration).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import requests

from benchmarks.load import run_load
from tests.servers import gunicorn
from twin_local.storage import FilesystemStore
from twin_server.types import Message

SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CONCURRENCY = 8
SIZES = (10, 1_000, 10_000)
QUIET = {"TWIN_LOG_LEVEL": "WARNING", "TWIN_RATE_LIMIT": "off", "TWIN_METRICS": "off"}


def throughput(data_dir: Path) -> None:
    body = lambda worker, i: {"message": "What do you work on?", "session_id": f"bench-{worker:04d}-{i // 50:05d}"}
    results = {}
    with gunicorn({}, app="benchmarks.bare_app:app", workers=2, threads=8) as url:
        run_load(url + "/chat", body, concurrency=CONCURRENCY, duration=1)  # warm-up
        results["bare"] = run_load(url + "/chat", body, concurrency=CONCURRENCY, duration=SECONDS)
    with gunicorn({"TWIN_DATA_DIR": str(data_dir), **QUIET}, workers=2, threads=8) as url:
        run_load(url + "/chat", body, concurrency=CONCURRENCY, duration=1)
        results["chat"] = run_load(url + "/chat", body, concurrency=CONCURRENCY, duration=SECONDS)
    for name, r in results.items():
        print(f"{name:5} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}")
    print(f"ratio chat/bare: {results['chat']['rps'] / results['bare']['rps']:.2f}  (target >= 0.5)")


def turn_cost(data_dir: Path, rounds: int = 6, per_round: int = 40) -> None:
    store = FilesystemStore(data_dir)
    stamp = Message("user", "seed").timestamp
    for size in SIZES:
        seed = [Message("user" if i % 2 == 0 else "assistant", f"stored message number {i} " * 4, stamp) for i in range(size)]
        store.append(f"turn-cost-{size}", seed)
    timings: dict[int, list[float]] = {size: [] for size in SIZES}
    with gunicorn({"TWIN_DATA_DIR": str(data_dir), **QUIET}, workers=1, threads=2) as url:
        session = requests.Session()
        for _ in range(rounds):  # interleaved, so drift in machine load hits every size alike
            for size in SIZES:
                for _ in range(per_round):
                    started = time.perf_counter()
                    response = session.post(url + "/chat", json={"message": "Tell me about your projects", "session_id": f"turn-cost-{size}"})
                    timings[size].append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
    base = statistics.median(timings[SIZES[0]])
    for size in SIZES:
        median = statistics.median(timings[size])
        print(f"turn at {size:6d} stored messages: median {1000 * median:6.2f} ms  ratio to 10: {median / base:.2f}")
    print("target: 10,000 within 1.25x of 10")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        throughput(Path(tmp) / "throughput")
        turn_cost(Path(tmp) / "turns")


if __name__ == "__main__":
    main()
