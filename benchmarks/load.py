"""A small closed-loop HTTP load generator for the benchmarks (loopback only)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import requests


def run_load(
    url: str,
    make_body: Callable[[int, int], dict],
    *,
    concurrency: int,
    duration: float,
    method: str = "POST",
) -> dict[str, float]:
    """``concurrency`` clients, each sending its next request when the last one answered."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client(worker: int) -> None:
        session = requests.Session()
        mine: list[float] = []
        failed = 0
        i = 0
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            response = session.request(method, url, json=make_body(worker, i), timeout=30)
            mine.append(time.perf_counter() - started)
            failed += response.status_code >= 400
            i += 1
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
    }
