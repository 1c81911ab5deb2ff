"""Issue 2's history benchmark: the cost of a turn on a session holding 10, 1,000 and 10,000 messages.

Target: 10,000 within 1.25x of 10. A real gunicorn (``gunicorn.conf.py``) with
request logs, metrics and the rate limit off, so the history is what differs;
the sizes take turns. The capacity against a bare Flask endpoint is
``bench_capacity``'s (wrk, server CPU per request, production defaults).

Run: ``python -m benchmarks.bench_core``
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import requests

from benchmarks.load import server
from twin_local.storage import FilesystemStore
from twin_server.types import Message

SIZES = (10, 1_000, 10_000)
#: The history alone: request logs, metrics and rate limits are measured by bench_capacity.
QUIET = {"TWIN_LOG_LEVEL": "WARNING", "TWIN_RATE_LIMIT": "off", "TWIN_METRICS": "off"}


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
        turn_cost(work, work / "gunicorn.log")


if __name__ == "__main__":
    main()
