"""Issue 12's benchmark: what recording an owner event adds to a turn, and that a slow notifier adds nothing.

Under gunicorn as production runs it (``gunicorn.conf.py``: logs, metrics and
rate limits on; the limit raised so the load is not refused), with the
offline twin and the filesystem store, notifying ``log`` and ``webhook`` (a
local receiver):

1. The same turns, each leaving a new address in a new session, sent to two
   servers in turn: one recording the lead (and notifying it),
   one with ``TWIN_OWNER_EVENTS=false``, which records nothing. The ratio of
   median latencies is what recording adds (target ≤ 1.05). Turns are paced,
   one every ``PACE`` seconds, as visitors come: the store write and the
   delivery run after the reply, and this measures that they stay out of it.
   The same sent back to back (every turn a lead, each on the heels of the
   last, so each reply shares the worker with the last one's delivery) is
   printed too: the worst case, not the target.
2. Paced, with the webhook receiver sleeping 2 s before it answers (target ≈ 1).
3. In one process (Flask's test client), what the turn itself spends on the
   event: the after-turn work (detection, making the lead, handing it over)
   as a share of the whole turn, medians. Less sensitive to a busy machine
   than two servers' latencies are.

Run: ``python -m benchmarks.bench_owner``
"""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.load import server
from tests.doubles.receiver import Receiver

TURNS, SLOW_TURNS, WARM_UP = 400, 60, 25
#: Seconds between the starts of two paced turns.
PACE = 0.02
ENV = {"TWIN_LOG_LEVEL": "WARNING", "TWIN_RATE_LIMIT": "1000000/minute", "TWIN_NOTIFY": "log,webhook"}


def message(n: int) -> str:
    return f"Hello, I'm Jane Doe, a recruiter. Please write to jane.doe{n:06d}@example.com about a role."


def timed(connection: http.client.HTTPConnection, n: int) -> float:
    body = json.dumps({"message": message(n), "session_id": f"bench-visitor-{n:06d}"})
    started = time.perf_counter()
    connection.request("POST", "/chat", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    assert response.status == 200, response.status
    return elapsed


def compare(servers: dict[str, tuple[str, int, int]], turns: int, pace: float = PACE) -> dict[str, list[float]]:
    """``turns`` turns to each server, alternating one by one (the order flipping each pair), so that whatever
    else the machine does hits both alike."""
    connections = {kind: http.client.HTTPConnection(host, port, timeout=30) for kind, (host, port, _) in servers.items()}
    timings: dict[str, list[float]] = {kind: [] for kind in servers}
    n = 0
    for _ in range(WARM_UP):
        for kind in servers:
            timed(connections[kind], n)
            n += 1
    for pair in range(turns):
        for kind in ("events", "none") if pair % 2 == 0 else ("none", "events"):
            started = time.perf_counter()
            timings[kind].append(timed(connections[kind], n))
            n += 1
            time.sleep(max(0.0, pace - (time.perf_counter() - started)))
    for connection in connections.values():
        connection.close()
    return timings


def report(label: str, timings: dict[str, list[float]], target: str) -> None:
    events, none = statistics.median(timings["events"]), statistics.median(timings["none"])
    print(f"{label}: turn recording a lead, median {1000 * events:6.2f} ms; recording nothing {1000 * none:6.2f} ms "
          f"({len(timings['events'])} each); ratio {events / none:.3f}  (target {target})")


def run(work: Path, log: Path, receiver: Receiver, name: str, turns: int, pace: float = PACE) -> dict[str, list[float]]:
    env = {**ENV, "TWIN_NOTIFY_WEBHOOK_URL": receiver.url}
    with server("wsgi:app", env, work / f"{name}-events", log) as recording, \
            server("wsgi:app", {**env, "TWIN_OWNER_EVENTS": "false"}, work / f"{name}-none", log) as quiet:
        return compare({"events": recording, "none": quiet}, turns, pace)


def in_process(work: Path, turns: int = 600) -> None:
    from twin_server.app import create_app

    app = create_app({"DATA_DIR": str(work / "in-process"), "RATE_LIMIT": "1000000/minute", "NOTIFY": "log",
                      "NOTIFY_QUEUE_SIZE": 10_000})
    turns_of = app.extensions["twin_server"].turns
    spent: list[float] = []

    def timed(callback):
        def run(turn, result):
            started = time.perf_counter()
            callback(turn, result)
            spent.append(time.perf_counter() - started)
        return run

    turns_of.after_turn[:] = [timed(callback) for callback in turns_of.after_turn]
    client, whole = app.test_client(), []
    for n in range(turns):
        started = time.perf_counter()
        with client.post("/chat", json={"message": message(n), "session_id": f"bench-in-{n:06d}"}) as response:
            assert response.status_code == 200
        whole.append(time.perf_counter() - started)
    app.extensions["twin_server"].owner.delivery.drain(30)
    share = statistics.median(spent) / statistics.median(whole)
    print(f"in one process: after-turn work {1e6 * statistics.median(spent):.0f} us of a "
          f"{1000 * statistics.median(whole):.2f} ms turn (medians): {100 * share:.1f} %  (target <= 5 %)")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-owner-") as scratch:
        work = Path(scratch)
        log = work / "gunicorn.log"
        in_process(work)
        with Receiver() as fast:
            timings = run(work, log, fast, "fast", TURNS)
            report(f"paced, one turn every {1000 * PACE:.0f} ms", timings, "<= 1.05")
            recorded = len(timings["events"]) + WARM_UP
            print(f"  leads recorded {recorded}, notifications the receiver got {len(fast.wait_for(recorded, 10))}")
        with Receiver() as fast:
            report("back to back (worst case)", run(work, log, fast, "b2b", TURNS, 0.0), "informative")
        with Receiver(delay=2.0) as slow:
            timings = run(work, log, slow, "slow", SLOW_TURNS)
            answered = len(slow.delivered)
            report("paced, webhook sleeping 2 s", timings, "~ 1.0")
            print(f"  slowest turn recording a lead {1000 * max(timings['events']):.1f} ms; the receiver had "
                  f"answered {answered} of {len(timings['events']) + WARM_UP} notifications by the end")


if __name__ == "__main__":
    main()
