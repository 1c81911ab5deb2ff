"""Issue 3's fault-injection benchmark: the default retry policy against a flaky LLM.

An LLM backend fails a given fraction of calls with a transient error (seeded,
so runs are comparable). Requests go through the whole HTTP path (Flask test
client) with the default policy; the backoff sleeps run on a fake clock, so
"added latency" is the backoff a visitor would wait, reported next to the
0 % run measured in the same process. Theory for 3 attempts: success =
1 - p^3 (10 % → 99.9 %, 30 % → 97.3 %, 50 % → 87.5 %) while the retry budget
holds. Last, a backend that is down for good: the budget caps the calls.

Run: ``python -m benchmarks.bench_retry``
"""

from __future__ import annotations

import random
import statistics
import time

from tests.doubles.scripted import SCRIPTED_CONFIG, ScriptedPlugin
from twin_server.app import create_app
from twin_server.errors import BackendUnavailable

REQUESTS = 2000


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(failure_rate: float, requests: int = REQUESTS) -> dict[str, float]:
    rng = random.Random(1234)
    plugin = ScriptedPlugin()
    calls = [0]

    def flaky(prompt):
        calls[0] += 1
        if rng.random() < failure_rate:
            raise BackendUnavailable("injected")
        return "ok"

    plugin.llm.default = flaky
    clock = VirtualClock()
    app = create_app(
        {**SCRIPTED_CONFIG, "HISTORY_WINDOW": 0, "RATE_LIMIT": "off"},
        plugins=[plugin],
        entrypoints=False,
        retry_options={"clock": clock, "sleep": clock.sleep, "random": random.Random(99)},
    )
    client = app.test_client()
    waits, ok = [], 0
    started = time.perf_counter()
    for i in range(requests):
        before = clock.now
        response = client.post("/chat", json={"message": "hi", "session_id": f"bench-{i:06d}"})
        ok += response.status_code == 200
        waits.append(clock.now - before)
    cpu = (time.perf_counter() - started) / requests
    waits.sort()
    return {
        "success": ok / requests,
        "calls_per_request": calls[0] / requests,
        "mean_wait_s": statistics.fmean(waits),
        "p99_wait_s": waits[int(0.99 * (len(waits) - 1))],
        "ms_per_request": 1000 * cpu,
    }


def main() -> None:
    import logging

    logging.disable(logging.CRITICAL)  # every retry and failure logs; 2,000 requests would flood the terminal
    run(0.0, requests=300)  # warm-up: imports, first-request set-up
    baseline = run(0.0)
    print(f"{'failure':>8} {'success':>8} {'theory':>7} {'calls/req':>9} {'mean wait':>10} {'p99 wait':>9} {'cpu ms/req':>10}")
    for rate in (0.0, 0.1, 0.3, 0.5):
        r = baseline if rate == 0 else run(rate)
        print(
            f"{rate:8.0%} {r['success']:8.1%} {1 - rate ** 3:7.1%} {r['calls_per_request']:9.2f} "
            f"{r['mean_wait_s']:9.2f}s {r['p99_wait_s']:8.2f}s {r['ms_per_request']:7.2f} ({r['ms_per_request'] / baseline['ms_per_request']:.2f}x)"
        )
    print("at 50 % the budget drains (each fully failed request costs 10 tokens, a clean success refunds 1),")
    print("so later requests stop retrying: that is the budget protecting a mostly-dead backend.")
    down = run(1.0, requests=1000)
    calls = round(down["calls_per_request"] * 1000)
    print(f"down for good: 1000 requests -> {calls} backend calls (without a budget: 3000; budget 500/5 = 100 retries)")


if __name__ == "__main__":
    main()
