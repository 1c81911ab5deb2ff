"""Batched metric writes in prometheus_client's multiprocess mode, in this process.

The ``multiprocess`` fixture switches prometheus_client to its mmap-file values
the way ``PROMETHEUS_MULTIPROC_DIR`` does at import (as prometheus_client's own
tests do); ``on_disk`` reads the files the way a scrape by another worker
would, without flushing anything.
"""

import os
import sys
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess, values

from twin_server.telemetry.metric_batches import Batcher, flush_all
from twin_server.telemetry.metrics import BUCKETS, Metrics
from twin_server.telemetry.usage import RequestRecord

CHAT = {"endpoint": "/chat", "method": "POST", "status": "200"}
LATER = 3600.0  # a flush interval no test waits for


@pytest.fixture
def multiprocess_dir(tmp_path, monkeypatch):
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    yield directory
    flush_all()  # nothing of this test's left for a flusher thread to write after the files close
    values.ValueClass.close_all_files()


def on_disk(directory, name, **labels) -> float:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return registry.get_sample_value(name, labels) or 0.0


def answer(metrics, seconds=0.02, tokens=0) -> None:
    metrics.observe_request(RequestRecord(input_tokens=tokens), endpoint="/chat", method="POST", status=200,
                            seconds=seconds, llm_backend="offline")


class Yielding(float):
    """A sample whose addition to a total lets the other threads run midway through the ``+=``.

    Without it CPython 3.11 switches threads only between whole ``+=`` statements, and an unlocked total
    would lose nothing here.
    """

    def __radd__(self, other):
        time.sleep(0)
        return float(other) + float(self)


def test_threads_hammering_one_series_lose_no_sample(multiprocess_dir):
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    metrics = Metrics(LATER)
    attempt = metrics.attempt_observer("llm", "offline")
    threads, per_thread = 8, 500
    stop = threading.Event()

    def hammer():
        for _ in range(per_thread):
            answer(metrics, seconds=Yielding(0.25), tokens=Yielding(2))
            attempt(1, Yielding(0.5), None)

    def flush_meanwhile():
        while not stop.is_set():
            flush_all()

    flusher = threading.Thread(target=flush_meanwhile)
    flusher.start()
    try:
        workers = [threading.Thread(target=hammer) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        stop.set()
        flusher.join()
        sys.setswitchinterval(previous)
    flush_all()
    total = threads * per_thread
    assert on_disk(multiprocess_dir, "twin_http_requests_total", **CHAT) == total
    assert on_disk(multiprocess_dir, "twin_http_request_duration_seconds_count", **CHAT) == total
    assert on_disk(multiprocess_dir, "twin_http_request_duration_seconds_sum", **CHAT) == 0.25 * total
    assert on_disk(multiprocess_dir, "twin_http_request_duration_seconds_bucket", **CHAT, le="0.1") == 0
    assert on_disk(multiprocess_dir, "twin_http_request_duration_seconds_bucket", **CHAT, le="0.25") == total
    assert on_disk(multiprocess_dir, "twin_llm_tokens_total", backend="offline", direction="input") == 2 * total
    backend = {"operation": "llm", "backend": "offline"}
    assert on_disk(multiprocess_dir, "twin_backend_call_duration_seconds_sum", **backend) == 0.5 * total


def test_samples_wait_in_the_process_until_a_flush(multiprocess_dir):
    metrics = Metrics(LATER)
    answer(metrics)
    assert on_disk(multiprocess_dir, "twin_http_requests_total", **CHAT) == 0
    flush_all()
    assert on_disk(multiprocess_dir, "twin_http_requests_total", **CHAT) == 1


def test_the_flusher_thread_writes_with_no_scrape_asking(multiprocess_dir):
    metrics = Metrics(0.05)
    answer(metrics)
    deadline = time.monotonic() + 30
    while on_disk(multiprocess_dir, "twin_http_requests_total", **CHAT) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert on_disk(multiprocess_dir, "twin_http_requests_total", **CHAT) == 1


def test_flush_interval_zero_writes_every_sample_at_once(multiprocess_dir, scripted_app):
    client = scripted_app(METRICS_FLUSH_SECONDS="0").test_client()
    assert client.post("/chat", json={"message": "hi"}).status_code == 200
    assert on_disk(multiprocess_dir, "twin_http_requests_total", **CHAT) == 1
    llm = {"operation": "llm", "backend": "scripted"}
    assert on_disk(multiprocess_dir, "twin_backend_call_duration_seconds_count", **llm) == 1


def test_a_scrape_in_the_process_sees_every_sample(multiprocess_dir, scripted_app):
    client = scripted_app(METRICS_FLUSH_SECONDS=str(LATER)).test_client()
    for _ in range(3):
        assert client.post("/chat", json={"message": "hi"}).status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert 'twin_http_requests_total{endpoint="/chat",method="POST",status="200"} 3.0' in text
    assert 'twin_backend_call_duration_seconds_count{backend="scripted",operation="llm"} 3.0' in text


def test_a_forked_child_starts_with_nothing_pending_and_a_flusher_of_its_own(multiprocess_dir):
    metrics = Metrics(LATER)
    for _ in range(5):
        answer(metrics)
    pid = os.fork()
    if pid == 0:  # the child: what it flushes must be its own request only
        code = 1
        try:
            answer(metrics)
            flushers = [t for t in threading.enumerate() if t.name == "twin-metrics-flush" and t.is_alive()]
            flush_all()
            code = 0 if flushers else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert on_disk(multiprocess_dir, "twin_http_requests_total", **CHAT) == 1
    flush_all()
    assert on_disk(multiprocess_dir, "twin_http_requests_total", **CHAT) == 6


def test_binding_a_child_again_gives_the_same_pending_series(multiprocess_dir):
    """Made-up methods bind their ``other`` child on every request; the pending table must not grow."""
    metrics = Metrics(LATER)
    for i in range(50):
        metrics.observe_request(RequestRecord(), endpoint="/chat", method=f"X{i}", status=200, seconds=0.01,
                                llm_backend="offline")
    batcher = Batcher(LATER)
    child = metrics.requests.labels("/chat", "other", "200")
    assert batcher.counter(child) is batcher.counter(child)
    flush_all()
    assert on_disk(multiprocess_dir, "twin_http_requests_total", endpoint="/chat", method="other", status="200") == 50


def test_batched_histograms_read_as_written_through_ones(multiprocess_dir):
    """The flush writes prometheus_client's private parts of a child (``_upper_bounds``, ``_sum``, ``_buckets``).

    If a prometheus_client release changes them, this fails: fix metric_batches and setup.cfg's pin together.
    """
    samples = [0.0, 0.005, 0.0051, 0.3, 60.0, 119.0, 500.0]  # bucket edges, between them, and past the last
    batched, direct = (Histogram(name, "h", ("x",), buckets=BUCKETS, registry=None).labels("a")
                       for name in ("batched", "direct"))
    assert batched._upper_bounds == [*BUCKETS, float("inf")] and len(batched._buckets) == len(BUCKETS) + 1
    batcher = Batcher(LATER)
    pending = batcher.histogram(batched)
    for seconds in samples:
        pending.observe(seconds)
        direct.observe(seconds)
    batcher.flush()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(multiprocess_dir))
    lines = generate_latest(registry).decode().splitlines()
    for line in (line for line in lines if line.startswith("batched")):
        assert line.replace("batched", "direct", 1) in lines
    assert sum(line.startswith("batched") for line in lines) == len(BUCKETS) + 3  # buckets, +Inf, count, sum


class HeldWrite:
    """A counter child whose write holds a lock of the file's (prometheus_client's values hold one) a while."""

    def __init__(self, seconds=0.0, fails=False):
        self.file_lock, self.writing, self.seconds, self.fails = threading.Lock(), threading.Event(), seconds, fails
        self.written = 0.0

    def inc(self, amount):
        with self.file_lock:
            self.writing.set()
            threading.Event().wait(self.seconds)
            if self.fails:
                raise OSError("no space left on device")
            self.written += amount


def flush_writing(seconds):
    """A batcher whose flush, on a thread of its own, is in its write of one counter for ``seconds``."""
    child_value = HeldWrite(seconds=seconds)
    batcher = Batcher(LATER)
    batcher.counter(child_value).inc()
    flushing = threading.Thread(target=batcher.flush)
    flushing.start()
    child_value.writing.wait(5)
    return child_value, batcher, flushing


def test_a_fork_waits_for_a_flush_writing_so_the_child_finds_the_files_lock_free():
    child_value, batcher, flushing = flush_writing(0.5)
    pid = os.fork()  # while the flush is in its write, unless the fork waits for it
    if pid == 0:
        os._exit(0 if child_value.file_lock.acquire(timeout=2) else 1)
    _, status = os.waitpid(pid, 0)
    flushing.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_value.written == 1


def test_a_write_that_fails_leaves_the_other_series_written():
    failing, fine = HeldWrite(fails=True), HeldWrite()
    batcher = Batcher(LATER)
    batcher.counter(failing).inc()
    batcher.counter(fine).inc(3)
    with pytest.raises(OSError, match="no space"):
        batcher.flush()
    assert fine.written == 3


def test_a_flush_returns_only_once_a_flush_writing_meanwhile_has_written():
    """A scrape's (or the exit's) flush must not read the files while the flusher thread still writes to them."""
    child_value, batcher, flushing = flush_writing(0.3)
    batcher.flush()  # nothing is left to take: the other flush took it
    written = child_value.written
    flushing.join()
    assert written == 1


def test_two_threads_forking_at_once_leave_the_flush_free():
    child_value, batcher, flushing = flush_writing(0.5)
    children = []

    def fork():
        pid = os.fork()  # both wait for the flush writing, then for each other
        if pid == 0:
            os._exit(0)
        children.append(pid)

    forks = [threading.Thread(target=fork) for _ in range(2)]
    for thread in forks:
        thread.start()
    for thread in forks + [flushing]:
        thread.join()
    for pid in children:
        os.waitpid(pid, 0)
    assert len(children) == 2
    stuck = batcher._flush_lock.locked()  # then every later flush, a scrape's and the exit's, waits for ever
    if stuck:
        batcher._flush_lock.release()  # so that this process's own exit flush does not
    assert not stuck
