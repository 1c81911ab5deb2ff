"""The S3 conversation store against moto's S3 server: format, windows, conflicts, throttling."""

import json
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.doubles import echo
from tests.doubles.moto_server import aws, fail_first, moto_server, record_sends  # noqa: F401  (fixtures)
from twin_aws.storage import S3ConversationStore
from twin_server.app import create_app
from twin_server.errors import BackendError, ConfigurationError, ValidationError
from twin_server.types import Message

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def turn(i: int) -> list[Message]:
    at = T0 + timedelta(minutes=i)
    return [Message("user", f"question {i}", at), Message("assistant", f"answer {i}\nwith a second line", at)]


def make_store(bucket, chunk=3, prefix="sessions/", **kwargs):  # kwargs: max_conflicts, clock, random
    config = {"S3_BUCKET": bucket, "S3_PREFIX": prefix, "S3_CHUNK_MESSAGES": chunk}
    store = S3ConversationStore.from_config(config)
    if kwargs:
        store = S3ConversationStore(store.client, store.bucket, store.prefix, store.chunk_messages, **kwargs)
    return store


@pytest.fixture
def bucket(aws):
    return aws.bucket()


def test_a_turn_is_one_compact_head_object(aws, bucket):
    store = make_store(bucket)
    store.append("session-0001", turn(0))
    assert aws.keys(bucket) == ["sessions/session-0001/head.jsonl"]
    body = aws.s3.get_object(Bucket=bucket, Key="sessions/session-0001/head.jsonl")["Body"].read()
    header, *records = body.decode().splitlines()
    assert json.loads(header)["sealed"] == 0
    assert [json.loads(r) for r in records] == [m.to_dict() for m in turn(0)]
    assert all(" " not in r.split('"content"')[0] for r in records)
    assert store.load("session-0001") == turn(0)


def test_long_histories_seal_chunks_and_every_window_is_right(aws, bucket):
    store = make_store(bucket, chunk=3)
    expected = []
    for i in range(10):
        store.append("long-session", turn(i))
        expected += turn(i)
    chunks = [k for k in aws.keys(bucket) if not k.endswith("head.jsonl")]
    head = aws.s3.get_object(Bucket=bucket, Key="sessions/long-session/head.jsonl")["Body"].read()
    unsealed = head.decode().splitlines()[1:]
    assert len(chunks) == 5 and 3 <= len(unsealed) <= 5
    assert len(chunks) * 3 + len(unsealed) == 20
    assert store.load("long-session") == expected
    for limit in range(0, 23):
        assert store.load("long-session", limit) == (expected[-limit:] if limit else [])


def test_an_uncontended_turn_costs_three_requests(bucket):
    store = make_store(bucket, chunk=50)
    store.append("window-session", [m for i in range(300) for m in turn(i)])
    store.append("window-session", turn(300))  # seals what the first append stored
    sends = record_sends(store.client)
    assert len(store.load("window-session", 20)) == 20
    assert sends == ["ListObjectsV2", "GetObject"]  # the turn objects first, then the head
    sends.clear()
    store.append("window-session", turn(301))  # the head the load read, written back IfMatch
    assert sends == ["PutObject"]


def test_delete_removes_the_head_and_every_chunk(aws, bucket):
    store = make_store(bucket, chunk=2)
    store.append("erase-me-01", [m for i in range(5) for m in turn(i)])
    store.append("keep-me-001", turn(0))
    assert store.delete("erase-me-01") is True
    assert aws.keys(bucket) == ["sessions/keep-me-001/head.jsonl"]
    assert store.load("erase-me-01") == []
    assert store.delete("erase-me-01") is False


@pytest.mark.parametrize("prefix, key", [("", "sess-0001/head.jsonl"), ("a/b", "a/b/sess-0001/head.jsonl"),
                                         ("a/b/", "a/b/sess-0001/head.jsonl")])
def test_prefix_slash_is_optional(aws, bucket, prefix, key):
    make_store(bucket, prefix=prefix).append("sess-0001", turn(0))
    assert aws.keys(bucket) == [key]


@pytest.mark.parametrize("session_id", ["../x", "a/b", "short", "x" * 129, "abc\ndefgh"])
def test_hostile_session_ids_are_refused_before_any_request(bucket, session_id):
    store = make_store(bucket)
    sends = record_sends(store.client)
    for call in (lambda: store.load(session_id), lambda: store.append(session_id, turn(0)),
                 lambda: store.delete(session_id)):
        with pytest.raises(ValidationError):
            call()
    assert sends == []


def test_an_object_that_is_not_a_session_is_a_backend_error(aws, bucket):
    aws.s3.put_object(Bucket=bucket, Key="sessions/foreign-01/head.jsonl", Body=b"hello\n")
    with pytest.raises(BackendError, match="not a twin-server session"):
        make_store(bucket).load("foreign-01")


def test_a_corrupt_record_is_skipped(aws, bucket):
    store = make_store(bucket)
    store.append("corrupt-001", turn(0))
    key = "sessions/corrupt-001/head.jsonl"
    body = aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    aws.s3.put_object(Bucket=bucket, Key=key, Body=body + b'{"role": "nobody"}\n')
    assert store.load("corrupt-001") == turn(0)


def test_a_missing_bucket_is_a_configuration_error(aws):
    with pytest.raises(ConfigurationError, match="NoSuchBucket"):
        make_store("no-such-bucket").load("session-0001")


# -- lost updates -----------------------------------------------------------------


class Interleave:
    """Runs ``other`` (another machine's write) just before ``store``'s first PutObject of a key
    ending with ``suffix`` (its head, by default) is sent."""

    def __init__(self, store, other, suffix="head.jsonl"):
        self.other, self.suffix, self.done, self.statuses = other, suffix, False, []
        store.client.meta.events.register("before-send.s3.PutObject", self.before)
        store.client.meta.events.register("after-call.s3.PutObject", self.after)

    def before(self, request, **kwargs):
        if not self.done and request.url.endswith(self.suffix):
            self.done = True
            self.other()

    def after(self, http_response, **kwargs):
        if http_response.url.endswith("head.jsonl"):
            self.statuses.append(http_response.status_code)


@pytest.mark.parametrize("existing", [False, True], ids=["new-session", "existing-session"])
def test_interleaved_turns_keep_both(aws, bucket, existing):
    a = make_store(bucket)
    b = make_store(bucket)
    if existing:
        a.append("shared-0001", turn(0))
    race = Interleave(a, lambda: b.append("shared-0001", turn(1)))
    sends = record_sends(a.client, "PutObject")
    a.append("shared-0001", turn(2))
    assert race.statuses == [412]  # A's head write lost, and A did not try again:
    assert len(sends) == 2  # its turn went into an object of its own
    turns = aws.keys(bucket, "sessions/shared-0001/turns/")
    assert len(turns) == 1 and re.fullmatch(r"sessions/shared-0001/turns/\d{16}-[0-9a-f]{8}\.jsonl", turns[0])
    assert a.load("shared-0001") == (turn(0) if existing else []) + turn(1) + turn(2)
    b.append("shared-0001", turn(3))  # the next head write folds the turn object in and deletes it
    assert aws.keys(bucket, "sessions/shared-0001/turns/") == []
    assert b.load("shared-0001") == (turn(0) if existing else []) + turn(1) + turn(2) + turn(3)


def test_an_append_racing_a_delete_starts_a_new_session_and_leaves_no_orphan(aws, bucket):
    a = make_store(bucket, chunk=2)
    b = make_store(bucket)
    a.append("deleted-001", turn(0))  # 2 messages: A's next append seals a chunk
    Interleave(a, lambda: b.delete("deleted-001"))
    a.append("deleted-001", turn(1))
    assert a.load("deleted-001") == turn(1)
    [key] = aws.keys(bucket)  # no chunk left behind: only A's turn, in an object of its own
    assert key.startswith("sessions/deleted-001/turns/")


def test_racing_appends_larger_than_a_chunk_lose_nothing(bucket):
    # Sealing chunk 0 from these appends would put unstored messages in it; whoever's head
    # write lost would then have overwritten the winner's chunk.
    a = make_store(bucket, chunk=3)
    b = make_store(bucket)
    a.append("big-turns-1", turn(0))
    Interleave(a, lambda: b.append("big-turns-1", turn(1) + turn(2)), suffix="")  # before A's first write
    a.append("big-turns-1", turn(3) + turn(4))
    b.append("big-turns-1", turn(5))
    assert a.load("big-turns-1") == turn(0) + turn(1) + turn(2) + turn(3) + turn(4) + turn(5)


def test_a_writer_that_always_loses_the_head_still_stores_every_turn(bucket):
    a = make_store(bucket, chunk=50)  # no sealing here: that would add its chunk writes
    b = make_store(bucket, chunk=50)
    counter = iter(range(100))
    a.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **kw: b.append("contended-1", turn(next(counter))) if request.url.endswith("head.jsonl") else None,
    )
    sends = record_sends(a.client)
    for i in range(3):
        a.append("contended-1", turn(90 + i))
    # Each append: the listing, the head (and the one turn object left: B's winning write folds and
    # deletes it each time), its losing head write, its own object. Bounded, and never a retry loop.
    first = ["ListObjectsV2", "GetObject", "PutObject", "PutObject"]
    then = ["ListObjectsV2", "GetObject", "GetObject", "PutObject", "PutObject"]
    assert sends == first + then + then
    users = [m.content for m in b.load("contended-1")][::2]
    assert users == ["question 0", "question 90", "question 1", "question 91", "question 2", "question 92"]


def test_many_concurrent_turns_through_the_api_keep_every_turn(aws, bucket, clock):
    app = create_app(
        {"STORAGE": "s3", "S3_BUCKET": bucket, "S3_CHUNK_MESSAGES": 4, "HISTORY_WINDOW": 6},
        retry_options={"clock": clock, "sleep": clock.sleep},
    )
    threads, turns, failures, conflicts = 8, 3, [], []
    app.extensions["twin_server"].backends.storage.client.meta.events.register(
        "after-call.s3.PutObject", lambda http_response, **kw: conflicts.append(http_response.status_code == 412)
    )

    def visitor(n):
        client = app.test_client()
        for i in range(turns):
            response = client.post("/chat", json={"message": f"visitor {n} turn {i}", "session_id": "crowded-01"})
            if response.status_code != 200 or not response.get_json()["history_saved"]:
                failures.append(response.get_data(as_text=True))

    workers = [threading.Thread(target=visitor, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
    assert any(conflicts)  # the visitors really did collide on the session's head
    messages = app.test_client().get("/conversation/crowded-01").get_json()["messages"]
    assert len(messages) == 2 * threads * turns
    users = [m["content"] for m in messages[::2]]
    assert sorted(users) == sorted(f"visitor {n} turn {i}" for n in range(threads) for i in range(turns))
    assert {m["role"] for m in messages[1::2]} == {"assistant"}
    for n in range(threads):  # each visitor's turns stay in their order
        mine = [u for u in users if u.startswith(f"visitor {n} ")]
        assert mine == [f"visitor {n} turn {i}" for i in range(turns)]


# -- throttling goes through the core's retry ------------------------------------


def test_slowdown_twice_then_success_is_retried_by_the_core(bucket, clock):
    app = create_app({"STORAGE": "s3", "S3_BUCKET": bucket}, retry_options={"clock": clock, "sleep": clock.sleep})
    store = app.extensions["twin_server"].backends.storage.client
    puts = record_sends(store, "PutObject")
    fail_first(store, "PutObject", times=2, status=503, code="SlowDown")
    response = app.test_client().post("/chat", json={"message": "hello", "session_id": "throttled-1"})
    assert response.status_code == 200 and response.get_json()["history_saved"] is True
    assert len(puts) == 3
    assert len(clock.sleeps) == 2
    assert len(app.test_client().get("/conversation/throttled-1").get_json()["messages"]) == 2


def test_slowdown_on_every_attempt_is_a_503_naming_the_store(bucket, clock):
    app = create_app({"STORAGE": "s3", "S3_BUCKET": bucket}, retry_options={"clock": clock, "sleep": clock.sleep})
    fail_first(app.extensions["twin_server"].backends.storage.client, "GetObject", times=3, status=503, code="SlowDown")
    response = app.test_client().get("/conversation/throttled-2")
    assert response.status_code == 503
    assert response.get_json()["operation"] == "storage"
    assert len(clock.sleeps) == 2


# -- the store behaves like a list, whatever the chunk size ----------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunk=st.integers(1, 4),
    batches=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    limits=st.lists(st.one_of(st.none(), st.integers(0, 30)), min_size=1, max_size=4),
)
def test_the_store_behaves_like_a_list(aws, bucket, chunk, batches, limits):
    store = S3ConversationStore(aws.s3, bucket, "sessions", chunk)  # the fixture's client: one per test, not per example
    session_id = f"prop-{uuid.uuid4().hex}"
    model, n = [], 0
    for size in batches:
        batch = [Message("user" if (n + k) % 2 == 0 else "assistant", f"m{n + k}", T0) for k in range(size)]
        store.append(session_id, batch)
        model += batch
        n += size
    for limit in limits:
        expected = model if limit is None else (model[-limit:] if limit else [])
        assert store.load(session_id, limit) == expected


# -- a crowd on one session: every turn is stored, and the backlog is folded -------------


def crowd(apps, session_id, turns):
    """``turns`` chats on one session at once, spread over ``apps`` (machines); their JSON bodies."""
    start, results = threading.Barrier(turns), [None] * turns

    def visitor(n):
        client = apps[n % len(apps)].test_client()
        start.wait()
        response = client.post("/chat", json={"message": f"visitor {n}", "session_id": session_id})
        results[n] = (response.status_code, response.get_json())

    workers = [threading.Thread(target=visitor, args=(n,)) for n in range(turns)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


def test_a_hundred_concurrent_turns_on_two_machines_are_all_stored(aws, bucket):
    config = {"STORAGE": "s3", "S3_BUCKET": bucket, "RATE_LIMIT": "off", "LLM": "echo"}
    machines = [create_app(config, plugins=[echo]) for _ in range(2)]
    results = crowd(machines, "crowded-02", 100)
    assert [status for status, _ in results] == [200] * 100
    assert [body["history_saved"] for _, body in results] == [True] * 100  # within the 5 s storage deadline
    assert_every_turn_stored(machines, "crowded-02", results)


def assert_every_turn_stored(machines, session_id, results):
    """Both machines see the same history: every question, each followed by the reply its visitor got."""
    replies = {f"visitor {n}": f"reply to: visitor {n}" for n in range(len(results))}
    assert [body["response"] for _, body in results] == list(replies.values())
    histories = [app.test_client().get(f"/conversation/{session_id}?limit=500").get_json()["messages"] for app in machines]
    assert histories[0] == histories[1]
    messages = histories[0]
    assert [m["role"] for m in messages] == ["user", "assistant"] * len(results)
    assert sorted(m["content"] for m in messages[::2]) == sorted(replies)
    assert [m["content"] for m in messages[1::2]] == [replies[m["content"]] for m in messages[::2]]


def test_a_backlog_of_turn_objects_is_folded_in_order_at_a_bounded_cost(aws, bucket):
    store = make_store(bucket, chunk=50)
    store.append("backlog-001", turn(0))
    crowd_stores = [make_store(bucket, chunk=50) for _ in range(40)]
    for other in crowd_stores:  # forty machines read the same head, then append one after the other:
        other.load("backlog-001", 20)
    for i, other in enumerate(crowd_stores, start=1):  # the first wins the head, 39 write turn objects
        other.append("backlog-001", turn(i))
    assert len(aws.keys(bucket, "sessions/backlog-001/turns/")) == 39
    expected = [m for i in range(41) for m in turn(i)]
    assert store.load("backlog-001") == expected
    sends = record_sends(store.client)
    assert store.load("backlog-001", 20) == expected[-20:]
    assert sends.count("GetObject") == 1 + 10  # the head and the ten newest turns: enough for 20 messages
    sends.clear()
    store.append("backlog-001", turn(41))  # its own object, then the oldest 32 folded into the head
    # (of which the load had read three already)
    assert sends == ["PutObject"] + ["GetObject"] * 29 + ["PutObject", "DeleteObjects"]
    assert len(aws.keys(bucket, "sessions/backlog-001/turns/")) == 39 + 1 - 32
    expected += turn(41)
    assert store.load("backlog-001") == expected
    store.load("backlog-001", 20)
    store.append("backlog-001", turn(42))  # now few enough: everything folded, the turn in the head
    assert aws.keys(bucket, "sessions/backlog-001/turns/") == []
    assert store.load("backlog-001") == expected + turn(42)


def test_folded_turn_objects_that_could_not_be_deleted_are_never_counted_twice(aws, bucket):
    a, b = make_store(bucket), make_store(bucket)
    a.append("leftover-01", turn(0))
    b.load("leftover-01", 20)
    a.append("leftover-01", turn(1))
    b.append("leftover-01", turn(2))  # b's head is stale: its turn becomes an object
    fail_first(a.client, "DeleteObjects", times=1, status=503, code="InternalError")
    a.append("leftover-01", turn(3))  # folds b's object, but cannot delete it
    assert len(aws.keys(bucket, "sessions/leftover-01/turns/")) == 1
    expected = turn(0) + turn(1) + turn(2) + turn(3)
    assert a.load("leftover-01") == expected  # the head names the object it folded: skipped
    a.append("leftover-01", turn(4))  # deletes it for good; the next head forgets it
    assert aws.keys(bucket, "sessions/leftover-01/turns/") == []
    a.append("leftover-01", turn(5))
    head = aws.s3.get_object(Bucket=bucket, Key="sessions/leftover-01/head.jsonl")["Body"].read()
    assert "folded" not in json.loads(head.splitlines()[0])
    assert a.load("leftover-01") == expected + turn(4) + turn(5)


def test_a_turn_object_vanishing_while_it_is_read_is_transient(aws, bucket):
    from twin_server.errors import BackendUnavailable

    a, b = make_store(bucket), make_store(bucket)
    a.append("vanishing-1", turn(0))
    b.load("vanishing-1", 20)
    a.append("vanishing-1", turn(1))
    b.append("vanishing-1", turn(2))  # an object
    [key] = aws.keys(bucket, "sessions/vanishing-1/turns/")
    def vanish(request, **kwargs):  # listed, then gone before it is fetched (folded and deleted)
        if "/turns/" in request.url:
            aws.s3.delete_object(Bucket=bucket, Key=key)

    a.client.meta.events.register("before-send.s3.GetObject", vanish)
    with pytest.raises(BackendUnavailable, match="changed while it was being read"):
        a.load("vanishing-1")


def test_a_retried_append_whose_first_try_was_stored_is_not_stored_twice(bucket, clock):
    from botocore.exceptions import ReadTimeoutError

    app = create_app({"STORAGE": "s3", "S3_BUCKET": bucket}, retry_options={"clock": clock, "sleep": clock.sleep})
    client = app.extensions["twin_server"].backends.storage.client
    lost = []

    def lose_the_answer(http_response, **kwargs):  # the head was written; its answer never arrives
        if http_response.url.endswith("head.jsonl") and not lost:
            lost.append(http_response.status_code)
            raise ReadTimeoutError(endpoint_url=http_response.url)

    client.meta.events.register("after-call.s3.PutObject", lose_the_answer)
    response = app.test_client().post("/chat", json={"message": "hello", "session_id": "timed-out-1"})
    assert response.get_json()["history_saved"] is True and lost == [200] and len(clock.sleeps) == 1
    assert len(app.test_client().get("/conversation/timed-out-1").get_json()["messages"]) == 2


def test_provision_creates_the_bucket_once(aws):
    store = make_store("made-by-init")
    assert store.provision() == ["created bucket made-by-init"]
    assert store.provision() == []
    store.append("session-0001", turn(0))
    assert store.load("session-0001") == turn(0)
