"""Batched metric writes under a real gunicorn: what one worker counted reaches every worker's scrape."""

import concurrent.futures
import os
import signal
import time

import requests

from tests.doubles.servers import gunicorn_server
from tests.http.test_production import chat_count, requests_logged

ENV = {"TWIN_RATE_LIMIT": "off", "TWIN_MAX_CHATS": "off"}


def chat_on_both_workers(url, log) -> int:
    """Chats on fresh connections, eight at a time, until both workers have answered some; how many."""
    sent = 0
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while sent < 400 and (sent < 16 or len({line["pid"] for line in requests_logged(log, path="/chat")}) < 2):
            replies = pool.map(lambda i: requests.post(url + "/chat", json={"message": f"hi {i}"}, timeout=30),
                               range(sent, sent + 8))
            assert [reply.status_code for reply in replies] == [200] * 8
            sent += 8
    assert len({line["pid"] for line in requests_logged(log, path="/chat")}) == 2
    return sent


def test_a_scrape_shows_the_other_workers_samples_once_its_flusher_wrote_them(tmp_path):
    log = tmp_path / "gunicorn.log"
    with gunicorn_server({**ENV, "TWIN_DATA_DIR": str(tmp_path / "data")}, log_path=log) as server:
        sent = chat_on_both_workers(server.url, log)
        # One kept-alive connection: every scrape is answered by the same worker, which flushes only its own
        # samples; the other worker's arrive with its flusher thread (the default interval, 1 s).
        with requests.Session() as scraper:
            seen, deadline = chat_count(server.url, scraper), time.monotonic() + 30
            while seen != sent and time.monotonic() < deadline:
                time.sleep(0.05)
                seen = chat_count(server.url, scraper)
        assert seen == sent
        assert len({line["pid"] for line in requests_logged(log, path="/metrics")}) == 1


def test_workers_stopped_with_sigterm_leave_every_sample(tmp_path):
    log = tmp_path / "gunicorn.log"
    env = {**ENV, "TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_METRICS_FLUSH_SECONDS": "3600"}
    with gunicorn_server(env, log_path=log) as server:
        sent = chat_on_both_workers(server.url, log)
        stopped = set(server.workers())
        for pid in stopped:  # no scrape has flushed them and their flusher waits an hour: only the exit flush writes
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (set(server.workers()) & stopped or len(server.workers()) < 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not set(server.workers()) & stopped
        assert chat_count(server.url) == sent
