"""The DynamoDB conversation store against moto's server: items, windows, pages, races, errors, `init`.

Written around a ``store`` fixture so that the generic store contract can run
against the same fixture.
"""

import json
import logging
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from botocore.awsrequest import AWSResponse
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.doubles.moto_server import aws, fail_first, moto_server, record_sends  # noqa: F401  (fixtures)
from twin_aws.dynamodb import DynamoDBConversationStore
from twin_server.app import create_app
from twin_server.cli import main
from twin_server.errors import BackendUnavailable, RateLimited, StartupError, ValidationError
from twin_server.types import Message

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
TABLE = "twin-test-conversations"
SORT_KEY = re.compile(r"m#\d{16}-[0-9a-f]{8}#\d{5}")


def turn(i: int) -> list[Message]:
    at = T0 + timedelta(minutes=i)
    return [Message("user", f"question {i}", at), Message("assistant", f"answer {i}", at)]


def make_store(**kwargs) -> DynamoDBConversationStore:
    client = DynamoDBConversationStore.from_config({"DYNAMODB_TABLE": TABLE}).client
    return DynamoDBConversationStore(client, TABLE, **kwargs)


@pytest.fixture
def table(aws):
    make_store().provision()
    return TABLE


@pytest.fixture
def store(table):
    return make_store()


def items(aws, session_id):
    response = aws.dynamodb.query(TableName=TABLE, KeyConditionExpression="pk = :pk",
                                  ExpressionAttributeValues={":pk": {"S": session_id}})
    return response["Items"]


def record_params(client, operation):
    seen = []
    client.meta.events.register(f"provide-client-params.dynamodb.{operation}",
                                lambda params, **kw: seen.append(dict(params)))
    return seen


# -- the layout ----------------------------------------------------------------------


def test_a_missing_session_is_empty(store):
    assert store.load("never-seen-1") == []
    assert store.load("never-seen-1", 5) == []
    assert store.delete("never-seen-1") is False


def test_each_message_is_one_item_sorted_after_the_last(aws, store):
    store.append("session-0001", turn(0))
    store.append("session-0001", turn(1))
    stored = items(aws, "session-0001")
    assert len(stored) == 4
    assert all(SORT_KEY.fullmatch(item["sk"]["S"]) for item in stored)
    assert [item["content"]["S"] for item in stored] == ["question 0", "answer 0", "question 1", "answer 1"]
    assert set(stored[0]) == {"pk", "sk", "role", "content", "timestamp"}  # no TTL unless set
    assert stored[0]["timestamp"]["S"] == "2024-05-01T12:00:00Z"
    assert store.load("session-0001") == turn(0) + turn(1)


def test_a_cut_short_reply_keeps_its_flag(store):
    partial = [Message("user", "hi", T0), Message("assistant", "hel", T0, complete=False)]
    store.append("partial-001", partial)
    assert store.load("partial-001") == partial


def test_a_turn_costs_two_requests_and_the_window_is_one_newest_first_query(store):
    store.append("window-session", [m for i in range(60) for m in turn(i)])
    sends, queries = record_sends(store.client), record_params(store.client, "Query")
    assert store.load("window-session", 20) == [m for i in range(50, 60) for m in turn(i)]
    assert sends == ["Query"]
    assert queries[0]["ScanIndexForward"] is False and queries[0]["Limit"] == 20
    assert queries[0]["ConsistentRead"] is True
    sends.clear()
    store.append("window-session", turn(60))
    assert sends == ["TransactWriteItems"]  # the load told it the newest stamp
    sends.clear()
    store.append("window-session", turn(61))  # no load first: one Query for the newest stamp
    assert sends == ["Query", "TransactWriteItems"]
    assert store.load("window-session", 4) == turn(60) + turn(61)


def test_an_append_is_one_transaction_of_conditional_puts(store):
    transactions = record_params(store.client, "TransactWriteItems")
    store.append("conditional", turn(0))
    [request] = transactions
    puts = [entry["Put"] for entry in request["TransactItems"]]
    assert len(puts) == 2 and all(p["ConditionExpression"] == "attribute_not_exists(sk)" for p in puts)


def test_full_loads_follow_the_pages_across_the_1_mb_limit(store):
    big = [Message("user" if i % 2 == 0 else "assistant", f"{i:04d}" + "x" * 100_000, T0) for i in range(24)]
    for start in range(0, 24, 8):  # 800 KB a transaction: under its 4 MB
        store.append("big-session", big[start:start + 8])
    queries = record_params(store.client, "Query")
    assert store.load("big-session") == big
    assert len(queries) >= 3 and "ExclusiveStartKey" in queries[1]  # 2.4 MB: at least three pages
    assert store.load("big-session", 12) == big[-12:]


def test_a_small_page_size_pages_too(table):
    store = make_store(page_size=3)
    expected = [m for i in range(5) for m in turn(i)]
    store.append("paged-0001", expected)
    sends = record_sends(store.client)
    assert store.load("paged-0001") == expected
    assert sends == ["Query"] * 4
    for limit in range(1, 12):
        assert store.load("paged-0001", limit) == expected[-limit:]


def test_a_message_too_big_for_an_item_is_refused_before_any_request(store):
    sends = record_sends(store.client)
    with pytest.raises(ValidationError, match="400 KB"):
        store.append("too-big-01", [Message("user", "x" * 410_000, T0)])
    assert sends == []


def test_appends_of_more_than_a_transaction_are_split_and_taken_back_on_failure(aws, store):
    many = [Message("user", f"m{i}", T0) for i in range(250)]
    store.append("many-00001", many)
    assert store.load("many-00001") == many
    sent = []

    def fail_the_second(request, **kwargs):
        sent.append(1)
        if len(sent) == 2:
            return AWSResponse(request.url, 500, {}, _Body(b'{"__type": "InternalServerError", "message": "x"}'))
        return None

    store.client.meta.events.register("before-send.dynamodb.TransactWriteItems", fail_the_second)
    with pytest.raises(BackendUnavailable):
        store.append("many-00002", many)
    assert items(aws, "many-00002") == []  # the first hundred were deleted again


class _Body:
    def __init__(self, body):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


@pytest.mark.parametrize("session_id", ["../x", "a/b", "short", "x" * 129, "abc\ndefgh", "#owner-items"])
def test_hostile_session_ids_are_refused_before_any_request(store, session_id):
    sends = record_sends(store.client)
    for call in (lambda: store.load(session_id), lambda: store.append(session_id, turn(0)),
                 lambda: store.delete(session_id)):
        with pytest.raises(ValidationError):
            call()
    assert sends == []


def test_a_corrupt_item_is_skipped(aws, store):
    store.append("corrupt-001", turn(0))
    aws.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "corrupt-001"}, "sk": {"S": "m#9"}, "role": {"S": "x"}})
    assert store.load("corrupt-001") == turn(0)


# -- concurrent writers ------------------------------------------------------------------


def test_writers_that_did_not_see_each_other_both_append(store):
    other = make_store()
    store.append("shared-0001", turn(0))
    store.load("shared-0001", 20)
    other.load("shared-0001", 20)  # both saw turn 0 only
    store.append("shared-0001", turn(1))
    sends = record_sends(other.client)
    other.append("shared-0001", turn(2))
    assert sends == ["TransactWriteItems"]  # no conflict, no re-read: the names differ
    assert store.load("shared-0001") == turn(0) + turn(1) + turn(2)


def test_a_turn_sorts_after_what_its_writer_read_whatever_the_clocks_say(table):
    ahead = make_store(clock=lambda: 2_000_000_000.0)
    behind = make_store(clock=lambda: 1_000_000_000.0)  # a machine whose clock is 31 years slow
    ahead.append("skewed-001", turn(0))
    behind.load("skewed-001", 20)
    behind.append("skewed-001", turn(1))
    ahead.load("skewed-001", 20)
    ahead.append("skewed-001", turn(2))
    assert behind.load("skewed-001") == turn(0) + turn(1) + turn(2)


def test_a_failed_load_leaves_no_stale_tail_for_the_append(table):
    now = [2_000_000_000.0]
    ahead = make_store(clock=lambda: now[0])
    behind = make_store(clock=lambda: 1_000_000_000.0)
    ahead.append("stale-0001", turn(0))
    behind.load("stale-0001", 20)  # sees turn 0
    now[0] += 60
    ahead.append("stale-0001", turn(1))  # meanwhile, a minute later on a machine whose clock is ahead
    fail_first(behind.client, "Query", 1, 500, "InternalServerError")
    with pytest.raises(BackendUnavailable):
        behind.load("stale-0001", 20)  # the turn answers without history ...
    behind.append("stale-0001", turn(2))  # ... and its append must not trust the tail of the load before
    assert behind.load("stale-0001") == turn(0) + turn(1) + turn(2)


def test_a_taken_name_means_re_reading_the_tail_and_trying_again(table):
    sleeps = []
    store, other = make_store(sleep=sleeps.append), make_store()
    other.append("collide-01", turn(0))
    store.load("collide-01", 20)
    other.load("collide-01", 20)
    taken = other._namer.name(other._local.seen[1])  # a good name, past turn 0 ...
    other._namer.name = lambda seen=0: taken
    other.append("collide-01", turn(1))
    real = store._namer.name
    names = iter([taken])  # ... which the store draws too (32 random bits in the same microsecond)
    store._namer.name = lambda seen=0: next(names, None) or real(seen)
    sends = record_sends(store.client)
    store.append("collide-01", turn(2))  # cancelled, the tail read, a new name past it
    assert sends == ["TransactWriteItems", "Query", "TransactWriteItems"]
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.01
    assert [m.content for m in store.load("collide-01")][::2] == ["question 0", "question 1", "question 2"]


def test_endless_collisions_give_up_as_transient(table):
    store = make_store(max_conflicts=3, sleep=lambda s: None)
    store._namer.name = lambda seen=0: "1714564800000000-00000001"
    store.append("collide-02", turn(0))
    with pytest.raises(BackendUnavailable, match="3 name collisions"):
        store.append("collide-02", turn(1))
    assert store.load("collide-02") == turn(0)


def test_a_retried_transaction_whose_first_try_was_applied_is_not_stored_twice(table, clock):
    from botocore.exceptions import ReadTimeoutError

    app = create_app({"STORAGE": "dynamodb", "DYNAMODB_TABLE": TABLE},
                     retry_options={"clock": clock, "sleep": clock.sleep})
    client = app.extensions["twin_server"].backends.storage.client
    lost = []

    def lose_the_answer(http_response, **kwargs):  # applied by DynamoDB; its answer never arrives
        if not lost:
            lost.append(http_response.status_code)
            raise ReadTimeoutError(endpoint_url=http_response.url)

    client.meta.events.register("after-call.dynamodb.TransactWriteItems", lose_the_answer)
    sends = record_sends(client, "TransactWriteItems")
    response = app.test_client().post("/chat", json={"message": "hello", "session_id": "timed-out-1"})
    assert response.get_json()["history_saved"] is True and lost == [200] and len(sends) == 2
    assert len(app.test_client().get("/conversation/timed-out-1").get_json()["messages"]) == 2


# -- delete --------------------------------------------------------------------------------


def test_delete_removes_messages_events_and_summary_in_batches(aws, store):
    store.append("erase-me-01", [m for i in range(30) for m in turn(i)])
    for sk in ("e#lead#1", "e#unanswered#2", "summary"):  # what the owner features keep with the session
        aws.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "erase-me-01"}, "sk": {"S": sk}})
    store.append("keep-me-001", turn(0))
    sends = record_sends(store.client, "BatchWriteItem")
    assert store.delete("erase-me-01") is True
    assert len(sends) == 3  # 63 items, 25 a batch
    assert items(aws, "erase-me-01") == []
    assert store.load("keep-me-001") == turn(0)
    assert store.delete("erase-me-01") is False


def test_unprocessed_deletes_are_sent_again(aws, store):
    store.append("unprocessed", [m for i in range(10) for m in turn(i)])

    def process_half(request, **kwargs):  # DynamoDB really deletes half, and hands the rest back
        body = json.loads(request.body)
        [(table, writes)] = body["RequestItems"].items()
        half = len(writes) // 2
        if half:
            aws.dynamodb.batch_write_item(RequestItems={table: writes[:half]})
            left = json.dumps({"UnprocessedItems": {table: writes[half:]}}).encode()
            return AWSResponse(request.url, 200, {}, _Body(left))
        return None

    store.client.meta.events.register("before-send.dynamodb.BatchWriteItem", process_half)
    assert store.delete("unprocessed") is True
    assert items(aws, "unprocessed") == []


def test_deletes_that_make_no_progress_are_left_to_the_core_retry(aws, table, clock):
    app = create_app({"STORAGE": "dynamodb", "DYNAMODB_TABLE": TABLE},
                     retry_options={"clock": clock, "sleep": clock.sleep})
    storage = app.extensions["twin_server"].backends.storage
    storage.append("stuck-0001", turn(0))
    answered = []

    def none_processed(request, **kwargs):
        if not answered:
            answered.append(1)
            body = json.loads(request.body)
            left = json.dumps({"UnprocessedItems": body["RequestItems"]}).encode()
            return AWSResponse(request.url, 200, {}, _Body(left))
        return None

    storage.client.meta.events.register("before-send.dynamodb.BatchWriteItem", none_processed)
    assert app.test_client().delete("/conversation/stuck-0001").status_code == 204
    assert len(clock.sleeps) == 1 and items(aws, "stuck-0001") == []


# -- expiry ----------------------------------------------------------------------------------


def test_session_ttl_stamps_every_item_and_expired_ones_are_not_loaded(aws, table):
    now = [1_800_000_000.0]
    store = make_store(ttl=3600, clock=lambda: now[0])
    store.append("expiring-1", turn(0))
    now[0] += 1800
    store.append("expiring-1", turn(1))
    assert [item["expires_at"]["N"] for item in items(aws, "expiring-1")] == ["1800003600"] * 2 + ["1800005400"] * 2
    now[0] += 1800  # turn 0 has expired; DynamoDB has not removed it yet
    assert store.load("expiring-1") == turn(1)
    assert store.load("expiring-1", 4) == turn(1)


def test_the_ttl_comes_from_twin_session_ttl(aws):
    assert DynamoDBConversationStore.from_config({"SESSION_TTL": 86400}).ttl == 86400
    assert DynamoDBConversationStore.from_config({"SESSION_TTL": "off"}).ttl is None
    with pytest.raises(StartupError, match="TWIN_DYNAMODB_TABLE"):
        create_app({"STORAGE": "dynamodb", "DYNAMODB_TABLE": "no spaces"})


# -- errors become problems -------------------------------------------------------------------


def test_a_missing_table_is_a_502_naming_it_and_the_twin_is_not_ready(aws, caplog):
    app = create_app({"STORAGE": "dynamodb", "DYNAMODB_TABLE": "no-such-table"})
    client = app.test_client()
    with caplog.at_level(logging.ERROR):
        response = client.get("/conversation/session-0001")
    assert response.status_code == 502 and response.get_json()["operation"] == "storage"
    assert "no-such-table" not in response.get_data(as_text=True)  # the table name goes to the log only
    assert "'no-such-table' does not exist" in caplog.text and "twin-server init" in caplog.text
    assert client.get("/ready").status_code == 503
    chat = client.post("/chat", json={"message": "hi", "session_id": "session-0001"}).get_json()
    assert chat["history_loaded"] is False and chat["history_saved"] is False


def test_access_denied_is_a_502_naming_the_table(table, caplog):
    app = create_app({"STORAGE": "dynamodb", "DYNAMODB_TABLE": TABLE})
    fail_first(app.extensions["twin_server"].backends.storage.client, "Query", 1, 400, "AccessDeniedException")
    with caplog.at_level(logging.ERROR):
        assert app.test_client().get("/conversation/session-0001").status_code == 502
    assert f"refused access to table '{TABLE}'" in caplog.text and "IAM" in caplog.text


@pytest.mark.parametrize("operation, code, fields", [
    ("Query", "ProvisionedThroughputExceededException", {}),
    ("Query", "ThrottlingException", {}),
    ("TransactWriteItems", "TransactionConflictException", {}),
    ("TransactWriteItems", "TransactionCanceledException",
     {"CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}]}),
    ("TransactWriteItems", "TransactionCanceledException",
     {"CancellationReasons": [{"Code": "ThrottlingError"}, {"Code": "None"}]}),
])
def test_throttling_and_transaction_conflicts_are_retried_by_the_core(table, clock, operation, code, fields):
    app = create_app({"STORAGE": "dynamodb", "DYNAMODB_TABLE": TABLE},
                     retry_options={"clock": clock, "sleep": clock.sleep})
    client = app.extensions["twin_server"].backends.storage.client
    fail_first(client, operation, times=2, status=400, code=code, **fields)
    response = app.test_client().post("/chat", json={"message": "hello", "session_id": "throttled-1"})
    body = response.get_json()
    assert response.status_code == 200 and body["history_loaded"] and body["history_saved"]
    assert len(clock.sleeps) == 2
    assert len(app.test_client().get("/conversation/throttled-1").get_json()["messages"]) == 2


def test_cancellation_reasons_pick_the_error(store):
    assert isinstance(store._special("transactioncanceledexception", _cancelled("ThrottlingError")), RateLimited)
    refused = store._special("transactioncanceledexception", _cancelled("ValidationError"))
    assert type(refused).__name__ == "BackendError"


def _cancelled(code):
    class Cancelled:
        response = {"Error": {"Code": "TransactionCanceledException", "Message": "m"},
                    "CancellationReasons": [{"Code": code}]}
    return Cancelled()


def test_throttling_on_every_attempt_is_a_503(table, clock):
    app = create_app({"STORAGE": "dynamodb", "DYNAMODB_TABLE": TABLE},
                     retry_options={"clock": clock, "sleep": clock.sleep})
    fail_first(app.extensions["twin_server"].backends.storage.client, "Query", 3, 400,
               "ProvisionedThroughputExceededException")
    response = app.test_client().get("/conversation/throttled-2")
    assert response.status_code == 503 and response.get_json()["operation"] == "storage"


# -- provisioning ---------------------------------------------------------------------------


def test_provision_creates_the_table_on_demand_with_ttl_once(aws):
    store = make_store()
    assert store.provision() == [f"created table {TABLE} (on-demand billing)", "enabled TTL on expires_at"]
    assert store.provision() == []
    described = aws.dynamodb.describe_table(TableName=TABLE)["Table"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    ttl = aws.dynamodb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_twin_server_init_provisions_the_selected_store(aws, monkeypatch):
    monkeypatch.setenv("TWIN_STORAGE", "dynamodb")
    monkeypatch.setenv("TWIN_DYNAMODB_TABLE", "made-by-init")
    first = CliRunner().invoke(main, ["init"])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == ["storage dynamodb: created table made-by-init (on-demand billing)",
                                         "storage dynamodb: enabled TTL on expires_at"]
    again = CliRunner().invoke(main, ["init"])
    assert again.exit_code == 0 and "nothing to do" in again.output
    monkeypatch.setenv("TWIN_STORAGE", "s3")
    monkeypatch.setenv("TWIN_S3_BUCKET", "bucket-by-init")
    made = CliRunner().invoke(main, ["init"])
    assert made.exit_code == 0 and made.output.strip() == "storage s3: created bucket bucket-by-init"


# -- the store behaves like a list ------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    limits=st.lists(st.one_of(st.none(), st.integers(0, 30)), min_size=1, max_size=4),
)
def test_the_store_behaves_like_a_list(store, batches, limits):
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


def test_owner_events_live_in_the_table_and_go_with_the_conversation(aws, table, tmp_path):
    """An app on the dynamodb store keeps its owner's events in the table (not on this machine's disk)."""
    from twin_server.app import create_app

    app = create_app({"STORAGE": "dynamodb", "DYNAMODB_TABLE": TABLE, "DATA_DIR": str(tmp_path / "data"),
                      "RATE_LIMIT": "off"})
    client = app.test_client()
    said = client.post("/chat", json={"message": "Hi, I'm Jane Doe, jane@example.com. What's your salary?"}).get_json()
    app.extensions["twin_server"].owner.delivery.drain(timeout=10)
    stored = aws.dynamodb.query(TableName=TABLE, KeyConditionExpression="pk = :pk",
                                ExpressionAttributeValues={":pk": {"S": "#owner-events"}})["Items"]
    assert any(item["sk"]["S"].startswith("doc#leads/") for item in stored)
    assert not (tmp_path / "data" / "owner-events").exists()
    assert client.delete(f"/conversation/{said['session_id']}").status_code == 204
    owner = app.extensions["twin_server"].owner
    assert owner.leads() == [] and owner.questions() == []
