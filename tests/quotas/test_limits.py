"""Rate limits, per-session caps and the daily LLM budget, through the API."""

import datetime
import logging
import time

import pytest
from limits.storage import MemoryStorage, storage_from_string

from twin_server.errors import StartupError
from twin_server.quotas.policy import BudgetExhausted, SessionAllowance
from twin_server.quotas.shm_storage import SharedMemoryStorage
from twin_server.quotas.sqlite_storage import SQLiteStorage
from twin_server.turn.turn import TurnRequest

PROBLEM = "application/problem+json"


def chat(client, message="hi", session_id=None, **headers):
    body = {"message": message, **({"session_id": session_id} if session_id else {})}
    return client.post("/chat", json=body, headers=headers)


def test_a_burst_gets_429_with_retry_after_then_recovers(scripted_app, scripted):
    client = scripted_app(RATE_LIMIT="2/second").test_client()
    assert [chat(client).status_code for _ in range(2)] == [200, 200]
    refused = chat(client)
    assert refused.status_code == 429 and refused.mimetype == PROBLEM
    assert refused.headers["Retry-After"] == "1"
    problem = refused.get_json()
    assert problem["retry_after"] == 1 and "2 per 1 second" in problem["detail"]
    assert scripted.llm.calls == 2  # the refused message never reached the LLM
    time.sleep(1.05)
    assert chat(client).status_code == 200


def test_the_default_limit_is_on(scripted_app):
    client = scripted_app().test_client()
    statuses = [chat(client).status_code for _ in range(31)]
    assert statuses == [200] * 30 + [429]


def test_only_chat_posts_are_limited(scripted_app):
    client = scripted_app(RATE_LIMIT="1/minute").test_client()
    assert chat(client).status_code == 200
    assert [client.get("/health").status_code for _ in range(5)] == [200] * 5
    assert client.options("/chat").status_code != 429
    assert client.post("/v1/chat/completions", json={"model": "twin", "messages": [{"role": "user", "content": "x"}]}).status_code == 429
    assert chat(client).status_code == 429


def test_limit_off(scripted_app):
    client = scripted_app(RATE_LIMIT="off").test_client()
    assert {chat(client).status_code for _ in range(40)} == {200}


def test_clients_are_told_apart_by_forwarded_for_only_behind_a_trusted_proxy(scripted_app):
    behind = scripted_app(RATE_LIMIT="1/minute", TRUSTED_PROXIES=1).test_client()
    assert chat(behind, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert chat(behind, **{"X-Forwarded-For": "203.0.113.2"}).status_code == 200
    assert chat(behind, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 429
    direct = scripted_app(RATE_LIMIT="1/minute").test_client()
    assert chat(direct, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert chat(direct, **{"X-Forwarded-For": "203.0.113.2"}).status_code == 429  # the header is not believed


def test_session_message_cap(scripted_app, scripted):
    client = scripted_app(SESSION_MAX_MESSAGES=2).test_client()
    assert [chat(client, session_id="visitor-0001").status_code for _ in range(2)] == [200, 200]
    capped = chat(client, session_id="visitor-0001")
    assert capped.status_code == 429 and capped.mimetype == PROBLEM
    assert "limit of 2 messages" in capped.get_json()["detail"]
    assert scripted.llm.calls == 2
    assert chat(client, session_id="visitor-0002").status_code == 200  # another session is not capped


def test_session_character_cap_counts_only_accepted_messages(scripted_app):
    client = scripted_app(SESSION_MAX_CHARS=10).test_client()
    assert chat(client, "12345", "visitor-0001").status_code == 200
    assert chat(client, "123456", "visitor-0001").status_code == 429
    assert chat(client, "12345", "visitor-0001").status_code == 200
    assert chat(client, "1", "visitor-0001").status_code == 429


def test_daily_budget_exhausted_is_503_until_midnight(scripted_app, scripted, caplog):
    client = scripted_app(DAILY_LLM_BUDGET=2).test_client()
    assert [chat(client, session_id=f"visitor-000{i}").status_code for i in range(2)] == [200, 200]
    with caplog.at_level(logging.INFO):
        spent = chat(client, session_id="visitor-0009")
    # Policy at work, not a failure: a warning line, no ERROR with a stack trace per refused chat.
    refused = [r for r in caplog.records if r.name == "twin_server" and "BudgetExhausted" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.WARNING] and not refused[0].exc_info
    assert spent.status_code == 503 and spent.mimetype == PROBLEM
    problem = spent.get_json()
    assert problem["title"] == "Daily budget spent" and problem["operation"] == "llm"
    now = datetime.datetime.now(datetime.timezone.utc)
    to_midnight = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    assert abs(int(spent.headers["Retry-After"]) - to_midnight) <= 5
    assert scripted.llm.calls == 2


def test_budget_resets_the_next_utc_day():
    day = datetime.datetime(2030, 5, 1, 23, 59, 0, tzinfo=datetime.timezone.utc).timestamp()
    clock = [day]
    allowance = SessionAllowance(MemoryStorage(), daily_budget=1, clock=lambda: clock[0])
    allowance(TurnRequest("visitor-0001", "hi"))
    with pytest.raises(BudgetExhausted) as caught:
        allowance(TurnRequest("visitor-0002", "hi"))
    assert caught.value.retry_after == 60
    clock[0] += 61
    allowance(TurnRequest("visitor-0003", "hi"))


def test_only_the_message_cap_is_on_by_default(scripted_app, scripted):
    app = scripted_app(RATE_LIMIT="off")
    [allowance] = app.extensions["twin_server"].turns.guards
    assert (allowance.max_messages, allowance.max_chars, allowance.daily_budget) == (500, None, None)
    client = app.test_client()
    assert {chat(client, "x" * 3000, "visitor-0001").status_code for _ in range(50)} == {200}


def test_nothing_is_counted_with_every_limit_off(scripted_app):
    app = scripted_app(RATE_LIMIT="off", SESSION_MAX_MESSAGES="off")
    assert app.extensions["twin_server"].turns.guards == []


def test_every_bad_limit_setting_is_reported_at_once(scripted_app):
    with pytest.raises(StartupError) as caught:
        scripted_app(
            RATE_LIMIT="lots", RATE_LIMIT_STORAGE="carrier-pigeon://coop", SESSION_MAX_MESSAGES=-1,
            DAILY_LLM_BUDGET="many", TRUSTED_PROXIES="some",
        )
    text = "\n".join(caught.value.problems)
    for setting in ("TWIN_RATE_LIMIT ", "TWIN_RATE_LIMIT_STORAGE", "TWIN_SESSION_MAX_MESSAGES", "TWIN_DAILY_LLM_BUDGET",
                    "TWIN_TRUSTED_PROXIES"):
        assert setting in text


def test_caps_and_limits_share_a_sqlite_storage_between_apps(scripted_app, tmp_path):
    """Two apps on one file behave like two gunicorn workers of one machine."""
    shared = {"RATE_LIMIT": "3/minute", "RATE_LIMIT_STORAGE": f"sqlite:///{tmp_path}/limits.sqlite", "SESSION_MAX_MESSAGES": 2}
    one, two = scripted_app(**shared).test_client(), scripted_app(**shared).test_client()
    assert chat(one, session_id="visitor-0001").status_code == 200
    assert chat(two, session_id="visitor-0001").status_code == 200
    assert chat(one, session_id="visitor-0001").status_code == 429  # session cap, across apps
    assert chat(two, session_id="visitor-0002").status_code == 429  # 3 per minute, across apps


#: The counter storages of one machine, built on a shared file under ``path`` with an injected clock.
STORAGES = {
    "sqlite": lambda path, clock: SQLiteStorage(f"sqlite:///{path}/sub/limits.sqlite", clock=clock),
    "shm": lambda path, clock: SharedMemoryStorage(f"shm:///{path}/sub/limits.shm", clock=clock),
}


@pytest.fixture(params=sorted(STORAGES))
def storages(request, tmp_path):
    """(make, clock): ``make()`` opens another object on the same file, like another worker would."""
    clock = [1000.0]
    return (lambda: STORAGES[request.param](tmp_path, lambda: clock[0])), clock


def test_counts_expire_with_their_window(storages):
    make, clock = storages
    storage = make()
    assert [storage.incr("k", 10) for _ in range(3)] == [1, 2, 3]
    assert storage.incr("k", 10, amount=5) == 8
    assert storage.get("k") == 8 and storage.get_expiry("k") == 1010.0
    clock[0] = 1009.999
    assert storage.get("k") == 8
    clock[0] = 1010.0
    assert storage.get("k") == 0 and storage.get_expiry("k") == 1010.0  # no window: now
    assert storage.incr("k", 10) == 1 and storage.get_expiry("k") == 1020.0
    assert storage.get("never") == 0


def test_several_windows_counted_at_once(storages):
    make, clock = storages
    storage = make()
    clock[0] = 0.5
    assert storage.incr_many([("minute", 60), ("day", 86400)]) == [1, 1]
    clock[0] = 61.0
    assert storage.incr_many([("minute", 60), ("day", 86400)], amount=2) == [2, 3]
    assert storage.get_expiry("minute") == 121.0 and storage.get_expiry("day") == 86400.5


def test_clear_reset_check_and_sharing_between_objects(storages):
    make, _ = storages
    first, second = make(), make()
    first.incr("a", 60)
    second.incr("a", 60)
    second.incr("b", 60)
    assert first.get("a") == 2 and first.check()
    first.clear("a")
    assert second.get("a") == 0 and second.get("b") == 1
    assert first.reset() == 1 and second.get("b") == 0
    assert second.incr("b", 60) == 1 and first.get("b") == 1


@pytest.mark.parametrize("scheme, cls", [("sqlite", SQLiteStorage), ("shm", SharedMemoryStorage)])
def test_storage_schemes_are_registered_and_checked(tmp_path, scheme, cls):
    assert isinstance(storage_from_string(f"{scheme}:///{tmp_path}/x.{scheme}"), cls)
    with pytest.raises(ValueError):
        cls(f"{scheme}://")


def test_an_unreachable_counter_storage_refuses_chats(scripted_app, scripted, tmp_path, monkeypatch):
    import sqlite3

    def down(self):
        raise sqlite3.OperationalError("disk I/O error")

    client = scripted_app(RATE_LIMIT_STORAGE=f"sqlite:///{tmp_path}/limits.sqlite").test_client()
    monkeypatch.setattr(SQLiteStorage, "_connection", down)
    refused = chat(client)
    assert refused.status_code == 503 and refused.mimetype == PROBLEM
    assert scripted.llm.calls == 0
    assert client.get("/health").status_code == 200


def chat_from(client, address):
    return client.post("/chat", json={"message": "hi"}, environ_base={"REMOTE_ADDR": address}).status_code


def test_ipv6_clients_share_one_allowance_per_64(scripted_app):
    """One visitor with a /64 has 2**64 addresses: they count as one client, IPv4 addresses one each."""
    client = scripted_app(RATE_LIMIT="1/minute").test_client()
    assert chat_from(client, "2001:db8:1:2::1") == 200
    assert chat_from(client, "2001:db8:1:2:ffff:ffff:ffff:fffe") == 429  # the same /64
    assert chat_from(client, "2001:DB8:1:2:0:0:0:2") == 429  # however it is written
    assert chat_from(client, "2001:db8:1:3::1") == 200  # the next /64
    assert chat_from(client, "203.0.113.1") == 200
    assert chat_from(client, "203.0.113.2") == 200  # IPv4: the exact address
    assert chat_from(client, "::ffff:203.0.113.1") == 429  # an IPv4 client of a dual-stack socket is its IPv4 address
    assert chat_from(client, "::ffff:203.0.113.3") == 200  # ... not one /64 with every other IPv4 client


def test_the_ipv6_prefix_is_a_setting(scripted_app):
    client = scripted_app(RATE_LIMIT="1/minute", RATE_LIMIT_IPV6_PREFIX=128).test_client()
    assert chat_from(client, "2001:db8:1:2::1") == 200
    assert chat_from(client, "2001:db8:1:2::2") == 200
    wide = scripted_app(RATE_LIMIT="1/minute", RATE_LIMIT_IPV6_PREFIX=48).test_client()
    assert chat_from(wide, "2001:db8:1:2::1") == 200
    assert chat_from(wide, "2001:db8:1:ffff::1") == 429
    for bad in (0, 129, "wide"):
        with pytest.raises(StartupError, match="TWIN_RATE_LIMIT_IPV6_PREFIX"):
            scripted_app(RATE_LIMIT_IPV6_PREFIX=bad)


def test_keys_worked_out_once_stay_bounded_and_count_on_after_the_table_empties(monkeypatch):
    import limits as limits_lib

    from twin_server.quotas import policy

    monkeypatch.setattr(policy, "KEYS_KEPT", 8)
    storage = MemoryStorage()
    rate = policy.RateLimit(limits_lib.parse_many("100/minute;1000/day"), storage)
    first = rate.windows("192.0.2.1")
    assert first == [("LIMITER/chat/192.0.2.1/100/1/minute", 60), ("LIMITER/chat/192.0.2.1/1000/1/day", 86400)]
    assert rate.windows("192.0.2.1") is first  # kept, not worked out again
    allowance = SessionAllowance(storage, max_messages=30)
    assert allowance._session_key("visitor-0000") is allowance._session_key("visitor-0000")
    for n in range(20):  # more clients and sessions than the tables keep
        rate.windows(f"192.0.2.{n + 2}")
        allowance(TurnRequest(f"visitor-{n:04d}", "hi"))
        assert len(rate._windows) <= 8 and len(allowance._session_keys) <= 8
    assert rate.windows("192.0.2.1") == first  # worked out again, the same
    for _ in range(3):
        allowance(TurnRequest("visitor-0000", "hi"))
    assert storage.get(allowance._session_key("visitor-0000") + "/messages") == 4
