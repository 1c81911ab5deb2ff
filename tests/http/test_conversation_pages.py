"""Issue 18, item 6: GET /conversation/<id> a page at a time, counted in the rate limit; sessions end at 500 messages.

The attack: 2,000 turns made an 8.5 MB session, and 16 concurrent GETs of it
(free of any limit) took a worker from 42 MB to 223 MB.
"""

from __future__ import annotations

import concurrent.futures
import datetime

import pytest
import requests

from tests.doubles.servers import gunicorn
from twin_local.storage import FilesystemStore
from twin_server.types import Message

PROBLEM = "application/problem+json"
START = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


def messages(count, start=0, size=0):
    return [
        Message("user" if i % 2 == 0 else "assistant", f"m{i:05d} " + "x" * size, START + datetime.timedelta(seconds=i))
        for i in range(start, start + count)
    ]


@pytest.fixture
def app(local_app):
    return local_app(RATE_LIMIT="off")


def store_of(app):
    return app.extensions["twin_server"].backends.storage


def contents(page):
    return [m["content"] for m in page["messages"]]


def walk(client, session_id, **query):
    """Every page from the newest back, following ``next``; the list of pages."""
    pages, before = [], None
    for _ in range(100):
        params = {**query, **({"before": before} if before else {})}
        response = client.get(f"/conversation/{session_id}", query_string=params)
        assert response.status_code == 200, response.get_json()
        pages.append(response.get_json())
        before = pages[-1]["next"]
        if before is None:
            return pages
    raise AssertionError("next never ended")


def test_the_default_page_is_the_newest_hundred_oldest_first(app):
    store_of(app).append("visitor-0001", messages(1234))
    page = app.test_client().get("/conversation/visitor-0001").get_json()
    assert contents(page) == [f"m{i:05d} " for i in range(1134, 1234)]
    assert isinstance(page["next"], str) and page["session_id"] == "visitor-0001"


@pytest.mark.parametrize(("count", "limit"), [(1234, 100), (1234, 500), (1000, 500), (50, 1), (50, 7)])
def test_following_next_gives_every_message_once_in_order(app, count, limit):
    store_of(app).append("visitor-0001", messages(count))
    pages = walk(app.test_client(), "visitor-0001", limit=limit)
    assert all(len(page["messages"]) <= limit for page in pages)
    assert [c for page in reversed(pages) for c in contents(page)] == [f"m{i:05d} " for i in range(count)]
    assert len(pages) == -(-count // limit)  # the last full page says there is nothing older


def test_a_conversation_that_fits_one_page_has_no_next(app):
    store_of(app).append("visitor-0001", messages(100))
    page = app.test_client().get("/conversation/visitor-0001").get_json()
    assert len(page["messages"]) == 100 and page["next"] is None
    assert app.test_client().get("/conversation/never-seen-0001").get_json() == {
        "session_id": "never-seen-0001", "messages": [], "next": None}


def test_paging_back_while_the_visitor_chats_on_skips_nothing_and_repeats_nothing(app):
    store, client = store_of(app), app.test_client()
    store.append("visitor-0001", messages(50))
    first = client.get("/conversation/visitor-0001", query_string={"limit": 10}).get_json()
    store.append("visitor-0001", messages(6, start=50))  # three more turns meanwhile
    second = client.get("/conversation/visitor-0001", query_string={"limit": 10, "before": first["next"]}).get_json()
    third = client.get("/conversation/visitor-0001", query_string={"limit": 10, "before": second["next"]}).get_json()
    assert contents(first) == [f"m{i:05d} " for i in range(40, 50)]
    seen = contents(third) + contents(second)
    assert seen == [f"m{i:05d} " for i in range(40 - len(seen), 40)] and len(third["messages"]) == 10


def test_a_cursor_of_a_deleted_conversation_is_a_400(app):
    store, client = store_of(app), app.test_client()
    store.append("visitor-0001", messages(30))
    cursor = client.get("/conversation/visitor-0001", query_string={"limit": 10}).get_json()["next"]
    client.delete("/conversation/visitor-0001")
    store.append("visitor-0001", messages(30, start=100))
    response = client.get("/conversation/visitor-0001", query_string={"before": cursor})
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert "without 'before'" in response.get_json()["detail"]


@pytest.mark.parametrize("query", [
    {"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"limit": "1.5"},
    {"before": "12"}, {"before": "0.0123456789abcdef"}, {"before": "5.0123456789ABCDEF"}, {"offset": 3},
])
def test_bad_queries_are_400_problems(app, query):
    response = app.test_client().get("/conversation/visitor-0001", query_string=query)
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert response.get_json()["errors"]


def test_every_read_of_a_conversation_counts_against_the_clients_allowance(local_app):
    client = local_app(RATE_LIMIT="4/minute").test_client()
    assert client.get("/conversation/visitor-0001").status_code == 200
    assert client.head("/conversation/visitor-0001").status_code == 200
    assert client.get("/conversation/not a session").status_code in (400, 404)  # counted before routing, too
    assert client.post("/chat", json={"message": "hi"}).status_code == 200  # one allowance for reads and chats
    refused = client.get("/conversation/visitor-0001")
    assert refused.status_code == 429 and refused.mimetype == PROBLEM and int(refused.headers["Retry-After"]) >= 1
    assert client.post("/chat", json={"message": "hi"}).status_code == 429
    assert client.delete("/conversation/visitor-0001").status_code == 204  # erasure is never refused
    assert client.get("/health").status_code == 200


def test_a_session_ends_at_500_messages_by_default(scripted_app, scripted):
    client = scripted_app(RATE_LIMIT="off").test_client()
    statuses = [client.post("/chat", json={"message": f"q{i}", "session_id": "visitor-0001"}).status_code
                for i in range(501)]
    assert statuses == [200] * 500 + [429]
    refused = client.post("/chat/stream", json={"message": "more", "session_id": "visitor-0001"})
    assert refused.status_code == 429 and refused.mimetype == PROBLEM
    assert "limit of 500 messages; start a new conversation" in refused.get_json()["detail"]
    assert scripted.llm.calls == 500
    assert client.post("/chat", json={"message": "hi", "session_id": "visitor-0002"}).status_code == 200
    assert len(scripted.store.load("visitor-0001")) == 1000


def test_many_concurrent_reads_of_a_huge_conversation_answer_a_page_each(tmp_path):
    """The attack against gunicorn: a 4 MB conversation read by 16 clients at once."""
    data = tmp_path / "data"
    FilesystemStore(data).append("visitor-0001", messages(2000, size=2000))
    with gunicorn({"TWIN_DATA_DIR": str(data), "TWIN_RATE_LIMIT": "off"}, workers=1, threads=16) as url:
        def read(_):
            return requests.get(f"{url}/conversation/visitor-0001", timeout=30)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(read, range(16)))
        assert {r.status_code for r in responses} == {200}
        for response in responses:
            page = response.json()
            assert [m["content"][:6] for m in page["messages"]] == [f"m{i:05d}" for i in range(1900, 2000)]
            assert len(response.content) < 100 * 2100 + 1000 and page["next"]
        last = requests.get(f"{url}/conversation/visitor-0001", params={"limit": 500}, timeout=30).json()
        assert len(last["messages"]) == 500
