"""What ``POST /chat/stream`` adds to a language model's own token timing.

    python -m benchmarks.bench_streaming          # from the repository root; about 30 s

A real gunicorn process (gthread, 2 workers × 16 threads, 127.0.0.1) serves
the app with the ``paced`` test LLM (tests/doubles/paced.py): each reply is
TOKENS tokens, token ``i`` due ``(i + 1) × INTERVAL`` after the LLM is asked,
each carrying the wall-clock time it was emitted. Clients (requests with
``stream=True`` and a small SSE parser) open streams back to back, at 1 and
at 8 concurrent streams. Per stream:

  first event   time from sending the request to the first ``delta`` event
  added (TTFB)  first event minus INTERVAL: everything but the LLM's own wait
                (request, validation, persona, history, the relay, SSE, socket)
  per event     each delta's arrival minus the time the LLM emitted it

Not a test: it prints p50 and p99 of each and asserts nothing.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from tests.doubles.servers import gunicorn
from tests.doubles.sse_client import iter_events

INTERVAL = 0.02
TOKENS = 5
SECONDS_PER_LEVEL = 10.0
LEVELS = (1, 8)


def one_stream(session: requests.Session, url: str, first: list[float], lags: list[float]) -> None:
    sent = time.time()
    with session.post(url + "/chat/stream", json={"message": "hi"}, stream=True, timeout=30) as response:
        response.raise_for_status()
        deltas = 0
        for event in iter_events(response.iter_content(chunk_size=None)):
            if event.event != "delta":
                continue
            arrived = time.time()
            if deltas == 0:
                first.append(arrived - sent)
            lags.append(arrived - float(event.json()["text"]))
            deltas += 1
    if deltas != TOKENS:
        raise RuntimeError(f"a stream had {deltas} deltas, not {TOKENS}")


def run_level(url: str, concurrency: int, seconds: float) -> tuple[list[float], list[float]]:
    first: list[float] = []
    lags: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        session = requests.Session()
        mine_first: list[float] = []
        mine_lags: list[float] = []
        one_stream(session, url, [], [])  # warm-up: connection and the persona's cache
        while time.monotonic() < stop_at:
            one_stream(session, url, mine_first, mine_lags)
        with lock:
            first.extend(mine_first)
            lags.extend(mine_lags)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return first, lags


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float], q: float) -> str:
    return f"{1000 * percentile(values, q):7.2f}"


def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        env = {
            "TWIN_DATA_DIR": str(Path(data) / "data"),
            "TWIN_LLM": "paced",
            "TWIN_PACED_INTERVAL": str(INTERVAL),
            "TWIN_PACED_TOKENS": str(TOKENS),
            "TWIN_PACED_STAMPS": "true",
            "TWIN_RATE_LIMIT": "off",
        }
        # Its log goes to a file: a pipe nobody reads would fill up and stall the server.
        log = Path(data) / "gunicorn.log"
        with gunicorn(env, app="tests.doubles.paced_app:app", workers=2, threads=16, log_path=log) as url:
            print(f"paced LLM: {TOKENS} tokens, one every {1000 * INTERVAL:.0f} ms; gunicorn gthread 2×16 on 127.0.0.1")
            print(f"{'streams':>8} {'n':>6}   {'first event p50/p99 ms':>24}   {'added TTFB p50/p99 ms':>22}   {'per event p50/p99 ms':>21}")
            for concurrency in LEVELS:
                first, lags = run_level(url, concurrency, SECONDS_PER_LEVEL)
                added = [f - INTERVAL for f in first]
                print(
                    f"{concurrency:>8} {len(first):>6}   {ms(first, 0.5)} / {ms(first, 0.99)}      "
                    f"{ms(added, 0.5)} / {ms(added, 0.99)}      {ms(lags, 0.5)} / {ms(lags, 0.99)}"
                )
            print(f"(per event: {len(lags)} deltas at the last level; mean {1000 * statistics.fmean(lags):.2f} ms)")


if __name__ == "__main__":
    main()
