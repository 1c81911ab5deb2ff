"""What a chat turn costs the S3 store as the history grows, next to the filesystem store.

A turn here is what ``ChatService`` asks of storage: load the window (the last
20 messages) and append the new user message and reply. Each store is timed
at 10, 1,000 and 10,000 stored messages; the ratios to the 10-message case
show whether the cost grows with the history. The S3 store runs against
moto's server on 127.0.0.1 (so a request costs moto's latency, not S3's); the
request count per turn is what real S3 latency would multiply.

Run from the repository root: ``python -m benchmarks.bench_aws`` (about 10 s).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from tests.doubles.moto_server import MotoServer
from twin_aws.storage import S3ConversationStore
from twin_local.storage import FilesystemStore
from twin_server.types import Message

SIZES = (10, 1_000, 10_000)
WINDOW = 20
TURNS = 100
WARMUP = 3
NOW = datetime(2024, 5, 1, tzinfo=timezone.utc)


def history(count: int) -> list[Message]:
    return [
        Message("user" if i % 2 == 0 else "assistant", f"message {i}: " + "a sentence of a typical length. " * 4, NOW)
        for i in range(count)
    ]


def turn(store, session_id: str, i: int) -> None:
    store.load(session_id, WINDOW)
    store.append(session_id, [Message("user", f"question {i}?", NOW), Message("assistant", f"answer {i}. " * 20, NOW)])


def measure(store, count_requests: Callable[[object], list[str]] | None = None) -> dict:
    """Per size: median turn ms, requests per turn, ms to read the whole history.

    The sizes take turns (10, 1,000, 10,000, 10, ...) so that a busy machine
    slows them all alike and the ratios stay fair.
    """
    sessions = {size: f"bench-{size:06d}" for size in SIZES}
    for size, session_id in sessions.items():
        store.append(session_id, history(size))
        for i in range(WARMUP):  # the first one seals what the bulk append stored
            turn(store, session_id, i)
    times: dict[int, list[float]] = {size: [] for size in SIZES}
    for i in range(TURNS):
        for size, session_id in sessions.items():
            start = time.perf_counter()
            turn(store, session_id, i)
            times[size].append((time.perf_counter() - start) * 1000)
    results = {}
    for size, session_id in sessions.items():
        requests = None
        if count_requests is not None:
            sent = count_requests(store)
            turn(store, session_id, TURNS)
            requests = len(sent)
        start = time.perf_counter()
        store.load(session_id)
        full_ms = (time.perf_counter() - start) * 1000
        results[size] = {"ms": statistics.median(times[size]), "requests": requests, "full_ms": full_ms}
    return results


def s3_requests(store) -> list[str]:
    sent: list[str] = []
    store.client.meta.events.register("before-send.s3", lambda event_name, **kw: sent.append(event_name))
    return sent


@contextlib.contextmanager
def moto_environment(url: str) -> Iterator[None]:
    """boto3 pointed at moto for the block only: ``python -m benchmarks`` runs other benchmarks after."""
    values = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }
    saved = {key: os.environ.get(key) for key in [*values, "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"]}
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
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
    with MotoServer() as moto, tempfile.TemporaryDirectory() as tmp, moto_environment(moto.url):
        import boto3

        boto3.client("s3").create_bucket(Bucket="bench")
        s3 = measure(S3ConversationStore.from_config({"S3_BUCKET": "bench"}), s3_requests)
        fs = measure(FilesystemStore(Path(tmp)))
    print(f"Turn = load a {WINDOW}-message window + append 2 messages; median of {TURNS} turns.")
    print(f"{'history':>8} | {'s3 ms':>7} {'ratio':>6} {'req/turn':>8} | {'fs ms':>7} {'ratio':>6} |"
          f" {'full read s3 ms':>15} {'fs ms':>7}")
    for size in SIZES:
        a, b = s3[size], fs[size]
        print(f"{size:>8,} | {a['ms']:7.2f} {a['ms'] / s3[SIZES[0]]['ms']:6.2f} {a['requests']:>8} |"
              f" {b['ms']:7.3f} {b['ms'] / fs[SIZES[0]]['ms']:6.2f} | {a['full_ms']:15.1f} {b['full_ms']:7.1f}")


if __name__ == "__main__":
    main()
