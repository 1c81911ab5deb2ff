"""Issue 18, item 5: long streams and slow chats no longer take every thread of a worker.

The attacks, against a real gunicorn (gthread): 200 long SSE streams made one
worker run 129 threads (64 request threads plus 64 relay threads) and left
nothing for ``/health``. A probe must answer within gunicorn's timeout while
the attack runs; no time is measured. Every loop is bounded in count and
time, and every socket goes to 127.0.0.1.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.doubles import attack
from tests.doubles.servers import gunicorn_server, thread_count

TIMEOUT = 10  # gunicorn's worker timeout in these tests: the probes must answer within it
PACED = "tests.doubles.paced_app:app"


def env(tmp_path, interval, tokens, **extra):
    return {"TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_LLM": "paced", "TWIN_PACED_INTERVAL": str(interval),
            "TWIN_PACED_TOKENS": str(tokens), "TWIN_RATE_LIMIT": "off", **extra}


def probe(url):
    """/health and /ready, each within gunicorn's timeout."""
    return [requests.get(url + path, timeout=TIMEOUT).status_code for path in ("/health", "/ready")]


@pytest.mark.timeout(90)
def test_200_long_streams_leave_threads_for_probes_and_cost_no_relay_thread_each(tmp_path):
    # gunicorn.conf.py's own 64 threads; streams of 100 s, far longer than the test.
    with gunicorn_server(env(tmp_path, 0.05, 2000), app=PACED, workers=1, threads=64,
                         extra_args=("--timeout", str(TIMEOUT))) as server:
        (worker,) = server.workers()
        idle = thread_count(worker)
        sockets = attack.open_requests(server.url, attack.post("/chat/stream", {"message": "hi"}), 200)
        try:
            answers = attack.heads(sockets, deadline=time.monotonic() + 30)
            assert probe(server.url) == [200, 200]
            threads = thread_count(worker)
            statuses = sorted(status for status, _ in answers.values())
            assert statuses == [200] * 32 + [503] * 168, f"{len(answers)} of 200 answered"
            busy = [fields for status, fields in answers.values() if status == 503]
            assert all(fields["Retry-After"] == "5" and fields["Content-Type"] == "application/problem+json"
                       for fields in busy)
            # 64 request threads at most, one relay reader per open stream (32), and the worker's own few.
            assert threads <= 64 + 32 + idle, (idle, threads)
        finally:
            attack.close_all(sockets)
        # Places come back when streams end: a new stream is admitted once the closed ones are noticed.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            again = requests.post(server.url + "/chat/stream", json={"message": "hi"}, stream=True, timeout=TIMEOUT)
            again.close()
            if again.status_code == 200:
                break
            time.sleep(0.2)
        assert again.status_code == 200


@pytest.mark.timeout(90)
def test_chats_waiting_on_a_slow_model_leave_threads_for_probes(tmp_path):
    # 8 threads; each chat waits 50 s for its whole reply (the paced model: 100 tokens, 0.5 s apart).
    with gunicorn_server(env(tmp_path, 0.5, 100), app=PACED, workers=1, threads=8,
                         extra_args=("--timeout", str(TIMEOUT))) as server:
        sockets = attack.open_requests(server.url, attack.post("/chat", {"message": "hi"}), 20)
        try:
            answers = attack.heads(sockets, deadline=time.monotonic() + 20, want=14)
            # 6 chats admitted (8 threads less 2 kept for the rest): they are still waiting; 14 refused at once.
            assert sorted(status for status, _ in answers.values()) == [503] * 14
            assert probe(server.url) == [200, 200]
            assert requests.get(server.url + "/conversation/visitor-0001", timeout=TIMEOUT).status_code == 200
        finally:
            attack.close_all(sockets)
