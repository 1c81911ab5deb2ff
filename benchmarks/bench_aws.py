"""What a chat turn costs the S3 and DynamoDB stores as the history grows, side by side.

A turn here is what ``ChatService`` asks of storage: load the window (the last
20 messages) and append the new user message and reply. Each store is measured
at 10, 1,000 and 10,000 stored messages: requests and bytes (sent and
received) per turn, the turn's median time, and the CPU the turn costs the
client thread (our code and botocore, not moto's). The ratios to the
10-message case show whether the cost grows with the history.

Both stores run against moto's server on 127.0.0.1, so a request costs moto's
latency, not AWS's: the request count is what real latency multiplies. moto
scans (and, for a transaction, copies) the whole table on every DynamoDB
request, so all sessions share one table and moto's cost is the same at every
size (about half a second a transaction with 11,000 items: moto's, not the
store's, which is what the CPU column shows); real DynamoDB reads a partition's tail in the same time however long
the partition is. Last, a crowd: 20 turns at once on one session from two
"machines" (two clients), and what each turn cost in requests.

Run from the repository root: ``python -m benchmarks.bench_aws`` (about three minutes).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

from tests.doubles.moto_server import MotoServer
from twin_aws.dynamodb import DynamoDBConversationStore
from twin_aws.storage import S3ConversationStore
from twin_server.types import Message

SIZES = (10, 1_000, 10_000)
WINDOW = 20
TURNS = 25
WARMUP = 3
CROWD = 20
NOW = datetime(2024, 5, 1, tzinfo=timezone.utc)


def history(count: int) -> list[Message]:
    return [
        Message("user" if i % 2 == 0 else "assistant", f"message {i}: " + "a sentence of a typical length. " * 4, NOW)
        for i in range(count)
    ]


def turn(store, session_id: str, i: int) -> None:
    store.load(session_id, WINDOW)
    store.append(session_id, [Message("user", f"question {i}?", NOW), Message("assistant", f"answer {i}. " * 20, NOW)])


class Traffic:
    """Counts the requests a client sends and the body bytes that go each way (per thread)."""

    def __init__(self, client) -> None:
        self.local = threading.local()
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service}", self._sent)
        client.meta.events.register(f"after-call.{service}", self._received)

    def reset(self) -> None:
        self.local.requests, self.local.bytes = 0, 0

    def _sent(self, request, **kwargs) -> None:
        body = request.body
        size = len(body) if isinstance(body, (bytes, str)) else 0
        if hasattr(body, "seek") and hasattr(body, "tell"):
            where = body.tell()
            size = body.seek(0, 2) - where
            body.seek(where)
        self.local.requests = getattr(self.local, "requests", 0) + 1
        self.local.bytes = getattr(self.local, "bytes", 0) + size

    def _received(self, http_response, **kwargs) -> None:
        self.local.bytes = getattr(self.local, "bytes", 0) + int(http_response.headers.get("content-length", 0))

    def taken(self) -> tuple[int, int]:
        return getattr(self.local, "requests", 0), getattr(self.local, "bytes", 0)


def measure(store) -> dict:
    """Per size: median turn ms, client CPU ms, requests and bytes per turn, ms to read the whole history.

    The sizes take turns (10, 1,000, 10,000, 10, ...) so that a busy machine
    slows them all alike and the ratios stay fair.
    """
    traffic = Traffic(store.client)
    sessions = {size: f"bench-{size:06d}" for size in SIZES}
    for size, session_id in sessions.items():
        preload(store, session_id, history(size))
        for i in range(WARMUP):  # the first one seals what the bulk append stored
            turn(store, session_id, i)
    samples: dict[int, list[tuple[float, float, int, int]]] = {size: [] for size in SIZES}
    for i in range(TURNS):
        for size, session_id in sessions.items():
            traffic.reset()
            wall, cpu = time.perf_counter(), time.thread_time()
            turn(store, session_id, i)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            samples[size].append((wall * 1000, cpu * 1000, *traffic.taken()))
    results = {}
    for size, session_id in sessions.items():
        start = time.perf_counter()
        store.load(session_id)
        full_ms = (time.perf_counter() - start) * 1000
        ms, cpu_ms, requests, sent = (statistics.median(column) for column in zip(*samples[size]))
        results[size] = {"ms": ms, "cpu_ms": cpu_ms, "requests": requests, "bytes": sent, "full_ms": full_ms}
    return results


def preload(store, session_id: str, messages: list[Message]) -> None:
    """Store a long history. DynamoDB's gets the items an append writes, but through BatchWriteItem:
    moto copies the whole table for every transaction, which would take minutes here."""
    if not isinstance(store, DynamoDBConversationStore):
        store.append(session_id, messages)
        return
    items = store._items(session_id, store._namer.name(), messages)
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]
        store.client.batch_write_item(RequestItems={store.table: batch})


def crowd(stores) -> tuple[float, int, int]:
    """CROWD turns at once on one session, from two clients: (requests per turn, most in one turn, messages kept)."""
    traffic = [Traffic(store.client) for store in stores]
    barrier, counts = threading.Barrier(CROWD), []

    def visitor(n: int) -> None:
        store, seen = stores[n % 2], traffic[n % 2]
        barrier.wait()
        seen.reset()
        turn(store, "bench-crowd", n)
        counts.append(seen.taken()[0])

    with concurrent.futures.ThreadPoolExecutor(CROWD) as pool:
        list(pool.map(visitor, range(CROWD)))
    return statistics.mean(counts), max(counts), len(stores[0].load("bench-crowd"))


@contextlib.contextmanager
def moto_environment(url: str) -> Iterator[None]:
    """boto3 pointed at moto for the block only: ``python -m benchmarks`` runs other benchmarks after."""
    values = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }
    foreign = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB")
    saved = {key: os.environ.get(key) for key in [*values, *foreign]}
    for key in foreign:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main() -> None:
    with MotoServer() as moto, moto_environment(moto.url):
        s3_store = S3ConversationStore.from_config({"S3_BUCKET": "bench"})
        s3_store.provision()
        # No deadline: moto's whole-table copy per transaction must not time the turns out.
        dynamo_store = DynamoDBConversationStore.from_config({"DYNAMODB_TABLE": "bench", "STORAGE_TIMEOUT": 0})
        dynamo_store.provision()
        results = {"s3": measure(s3_store), "dynamodb": measure(dynamo_store)}
        crowds = {
            "s3": crowd([S3ConversationStore.from_config({"S3_BUCKET": "bench"}) for _ in range(2)]),
            "dynamodb": crowd([DynamoDBConversationStore.from_config({"DYNAMODB_TABLE": "bench", "STORAGE_TIMEOUT": 0})
                               for _ in range(2)]),
        }
    print(f"Turn = load a {WINDOW}-message window + append 2 messages; medians of {TURNS} turns on moto.")
    print(f"{'store':>8} {'history':>8} | {'req/turn':>8} {'bytes':>7} | {'turn ms':>7} {'ratio':>5} |"
          f" {'cpu ms':>6} {'ratio':>5} | {'full read ms':>12}")
    for name, by_size in results.items():
        base = by_size[SIZES[0]]
        for size in SIZES:
            r = by_size[size]
            print(f"{name:>8} {size:>8,} | {r['requests']:>8g} {r['bytes']:>7,.0f} | {r['ms']:7.2f}"
                  f" {r['ms'] / base['ms']:5.2f} | {r['cpu_ms']:6.2f} {r['cpu_ms'] / base['cpu_ms']:5.2f} |"
                  f" {r['full_ms']:12.1f}")
    print(f"\n{CROWD} turns at once on one session from two clients:")
    for name, (mean, most, kept) in crowds.items():
        print(f"{name:>8}: {mean:.1f} requests per turn on average, {most} at most; {kept}/{2 * CROWD} messages kept")


if __name__ == "__main__":
    main()
