"""Issue 8's figures, measured the way bench_capacity measures: the recommended set-up under load.

1. Sustained chats/s with 64 wrk connections against an LLM that takes 200 ms,
   under ``gunicorn.conf.py``'s own workers and threads, logs, metrics and the
   rate limit on, against Little's law: 64 / 0.2 s = 320/s (target >= 90 %).
2. What JSON request logs + metrics + the rate limit cost: the same offline
   chat with all three on and all three off, by server CPU per request (from
   /proc), alternating with a bare Flask endpoint (target <= 15 % of the chat).

Run: ``python -m benchmarks.bench_production`` (about a minute; loopback only; needs wrk).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks import bench_capacity


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-production-") as scratch:
        work = Path(scratch)
        log = work / "servers.log"
        print(f"gunicorn.conf.py defaults on {os.cpu_count()} CPUs; client and servers share this machine; 127.0.0.1 only")
        bench_capacity.slow_llm(work, log)
        bench_capacity.report(bench_capacity.throughput(work, log, ["bare", "chat", "quiet"]))


if __name__ == "__main__":
    main()
