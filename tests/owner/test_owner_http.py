"""The offline twin end to end: leads and unanswered questions from every entry point, the owner's endpoints."""

import logging
import os

import pytest
from click.testing import CliRunner

from tests.doubles.receiver import Receiver
from twin_server.app import create_app
from twin_server.cli import main

KEY = "owner-key-0123456789"
OWNER = {"Authorization": f"Bearer {KEY}"}
LEAD_MESSAGE = "Hi, I'm Jane Doe. I'd like to talk about a role: jane@example.com"
UNCOVERED = "What do you think about cryptocurrency?"


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def build(tmp_path, clock, receiver):
    def build(**config):
        settings = {"DATA_DIR": str(tmp_path / "data"), "OWNER_KEYS": KEY, "NOTIFY": "log,webhook",
                    "NOTIFY_WEBHOOK_URL": receiver.url, "RATE_LIMIT": "off", **config}
        return create_app({k: v for k, v in settings.items() if v is not None},
                          retry_options={"clock": clock, "sleep": clock.sleep})

    return build


@pytest.fixture
def app(build):
    return build()


@pytest.fixture
def client(app):
    return app.test_client()


def drain(app):
    assert app.extensions["twin_server"].owner.delivery.drain(10)


def by_chat(client, message, session):
    assert client.post("/chat", json={"message": message, "session_id": session}).status_code == 200
    drain(client.application)  # what detection finds is stored (then notified) after the reply


def by_stream(client, message, session):
    response = client.post("/chat/stream", json={"message": message, "session_id": session})
    assert response.status_code == 200 and "event: done" in response.get_data(as_text=True)
    drain(client.application)


def by_v1(client, message, session):
    body = {"model": "ada-quill", "messages": [{"role": "user", "content": message}], "session_id": session}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    drain(client.application)


def by_v1_stream(client, message, session):
    body = {"model": "ada-quill", "messages": [{"role": "user", "content": message}], "session_id": session,
            "stream": True}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200 and "[DONE]" in response.get_data(as_text=True)
    drain(client.application)


@pytest.mark.parametrize("send", [by_chat, by_stream, by_v1, by_v1_stream])
def test_a_name_and_an_address_become_a_lead_and_a_webhook_post(app, client, receiver, send):
    send(client, LEAD_MESSAGE, "visitor-00001")
    leads = client.get("/owner/leads", headers=OWNER).get_json()["leads"]
    assert [(x["email"], x["name"], x["session_id"]) for x in leads] == [("jane@example.com", "Jane Doe",
                                                                           "visitor-00001")]
    assert set(leads[0]) >= {"id", "session_id", "email", "name", "notes", "created_at"}
    assert client.get("/owner/unanswered", headers=OWNER).get_json()["questions"] == []  # an address, no question
    [posted] = receiver.wait_for(1)
    assert posted["event"] == "lead" and posted["email"] == "jane@example.com" and posted["id"] == leads[0]["id"]
    assert posted["text"] == f"New lead from your twin: Jane Doe <jane@example.com> — {LEAD_MESSAGE}"
    drain(app)
    assert client.get("/owner/leads", headers=OWNER).get_json()["leads"][0]["delivery"] == {
        "log": "delivered", "webhook": "delivered"}


@pytest.mark.parametrize("send", [by_chat, by_stream, by_v1, by_v1_stream])
def test_an_uncovered_question_becomes_an_unanswered_one_counted_once_per_ask(app, client, receiver, send):
    send(client, UNCOVERED, "visitor-00001")
    send(client, "what do you think about cryptocurrency", "visitor-00002")
    by_chat(client, "Tell me your story", "visitor-00003")  # covered: not an unanswered question
    [question] = client.get("/owner/unanswered", headers=OWNER).get_json()["questions"]
    assert question["question"] == UNCOVERED and question["count"] == 2
    assert sorted(question["session_ids"]) == ["visitor-00001", "visitor-00002"]
    assert set(question) == {"id", "question", "count", "session_ids", "first_asked", "last_asked"}
    drain(app)
    assert [p["event"] for p in receiver.delivered] == ["unanswered"]  # the repeat is counted, not notified


def test_leaving_an_address_is_not_a_question_unless_one_is_asked(client):
    by_chat(client, "Hello, I'm Jane Doe: jane@example.com", "visitor-00001")
    assert client.get("/owner/unanswered", headers=OWNER).get_json()["questions"] == []
    by_chat(client, "bob@example.com here. What do you think about cryptocurrency?", "visitor-00002")
    [question] = client.get("/owner/unanswered", headers=OWNER).get_json()["questions"]
    assert question["session_ids"] == ["visitor-00002"]
    assert len(client.get("/owner/leads", headers=OWNER).get_json()["leads"]) == 2


def test_the_terminal_chat_records_the_same(tmp_path, monkeypatch, receiver):
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TWIN_NOTIFY", "webhook")
    monkeypatch.setenv("TWIN_NOTIFY_WEBHOOK_URL", receiver.url)
    result = CliRunner().invoke(main, ["chat", "--session", "terminal-0001"], input=f"{LEAD_MESSAGE}\n{UNCOVERED}\n")
    assert result.exit_code == 0, result.output
    assert sorted(p["event"] for p in receiver.wait_for(2)) == ["lead", "unanswered"]
    app = create_app({"DATA_DIR": str(tmp_path / "data")})
    owner = app.extensions["twin_server"].owner
    assert [x.session_id for x in owner.leads()] == ["terminal-0001"]
    assert [q.question for q in owner.questions()] == [UNCOVERED]


def test_owner_endpoints_need_the_owner_key(client):
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f"Basic {KEY}"}, {"X-API-Key": KEY}):
        for method, path in (("GET", "/owner/leads"), ("GET", "/owner/unanswered"), ("GET", "/owner/conversations"),
                             ("DELETE", "/owner/leads/x")):
            response = client.open(path, method=method, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.mimetype == "application/problem+json"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert KEY not in response.get_data(as_text=True)
    assert client.get("/owner/leads", headers=OWNER).status_code == 200


def test_without_owner_keys_there_are_no_owner_endpoints(build):
    client = build(OWNER_KEYS=None).test_client()
    assert client.get("/owner/leads", headers=OWNER).status_code == 404
    assert client.get("/owner/unanswered").status_code == 404


def test_owner_keys_from_a_secret_and_api_keys_are_not_owner_keys(build, monkeypatch):
    monkeypatch.setenv("TWIN_OWNER_SECRET", f"other-key, {KEY}")
    client = build(OWNER_KEYS="secret:TWIN_OWNER_SECRET", API_KEYS="api-key-1", PUBLIC_CHAT=False).test_client()
    assert client.get("/owner/leads", headers=OWNER).status_code == 200  # no API key needed here
    assert client.get("/owner/leads", headers={"Authorization": "Bearer api-key-1"}).status_code == 401
    assert client.get("/owner/leads", headers={"Authorization": "Bearer other-key"}).status_code == 200


def test_a_lead_is_deleted_by_the_owner(client):
    by_chat(client, LEAD_MESSAGE, "visitor-00001")
    [lead] = client.get("/owner/leads", headers=OWNER).get_json()["leads"]
    assert client.delete(f"/owner/leads/{lead['id']}", headers=OWNER).status_code == 204
    assert client.get("/owner/leads", headers=OWNER).get_json()["leads"] == []
    response = client.delete(f"/owner/leads/{lead['id']}", headers=OWNER)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_a_conversation_deleted_at_once_keeps_none_of_the_events_still_queued(build):
    with Receiver(delay=0.5) as slow:
        app = build(NOTIFY="webhook", NOTIFY_WEBHOOK_URL=slow.url)
        client = app.test_client()
        for n in range(3):  # the worker is busy delivering the first while the others wait in the queue
            client.post("/chat", json={"message": LEAD_MESSAGE.replace("jane@", f"jane{n}@"),
                                       "session_id": "visitor-00009"})
        assert client.delete("/conversation/visitor-00009").status_code == 204
        drain(app)
        assert client.get("/owner/leads", headers=OWNER).get_json()["leads"] == []


def test_deleting_a_conversation_deletes_its_events(client):
    by_chat(client, LEAD_MESSAGE, "visitor-00001")
    by_chat(client, UNCOVERED, "visitor-00001")
    by_chat(client, UNCOVERED, "visitor-00002")
    assert client.delete("/conversation/visitor-00001").status_code == 204
    assert client.get("/owner/leads", headers=OWNER).get_json()["leads"] == []
    [question] = client.get("/owner/unanswered", headers=OWNER).get_json()["questions"]
    assert question["session_ids"] == ["visitor-00002"] and question["count"] == 1


def test_conversations_newest_first_page_by_page(client, tmp_path):
    for n in range(5):
        by_chat(client, f"Hello number {n}", f"visitor-0000{n}")
    by_chat(client, "Tell me your story", "visitor-00001")  # the newest again
    for n, age in enumerate([50, 10, 40, 30, 20]):  # a file system's clock ticks coarser than these chats
        os.utime(tmp_path / "data" / f"visitor-0000{n}.jsonl", (1_700_000_000 - age,) * 2)
    first = client.get("/owner/conversations?limit=2&messages=1", headers=OWNER).get_json()
    assert [c["session_id"] for c in first["conversations"]] == ["visitor-00001", "visitor-00004"]
    assert [len(c["messages"]) for c in first["conversations"]] == [1, 1]
    assert first["conversations"][0]["messages"][0]["role"] == "assistant"
    second = client.get(f"/owner/conversations?limit=2&cursor={first['next_cursor']}", headers=OWNER).get_json()
    assert [c["session_id"] for c in second["conversations"]] == ["visitor-00003", "visitor-00002"]
    assert len(second["conversations"][0]["messages"]) == 2
    third = client.get(f"/owner/conversations?limit=2&cursor={second['next_cursor']}", headers=OWNER).get_json()
    assert [c["session_id"] for c in third["conversations"]] == ["visitor-00000"] and third["next_cursor"] is None
    for bad in ("cursor=nonsense", "limit=0", "limit=x", "limit=5000", "messages=-1"):
        response = client.get(f"/owner/conversations?{bad}", headers=OWNER)
        assert response.status_code == 400, bad


def test_owner_endpoints_are_rate_limited_before_the_key_is_checked(build):
    client = build(OWNER_RATE_LIMIT="3/minute").test_client()
    assert [client.get("/owner/leads", headers={"Authorization": "Bearer guess"}).status_code
            for _ in range(3)] == [401] * 3
    refused = client.get("/owner/leads", headers=OWNER)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def test_owner_answers_are_never_cached(client):
    assert client.get("/owner/leads", headers=OWNER).headers["Cache-Control"] == "no-store"


def test_no_lead_address_in_a_log_line_at_info(app, client, caplog):
    with caplog.at_level(logging.INFO):
        by_chat(client, LEAD_MESSAGE, "visitor-00001")
        drain(app)
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert any(getattr(r, "owner_event", {}).get("event") == "lead" for r in lines)  # the log notifier spoke
    for record in lines:
        assert "jane@example.com" not in record.getMessage() and "jane@example.com" not in str(vars(record))


def test_bad_owner_settings_are_listed_at_startup(tmp_path):
    from twin_server.app import startup_problems

    problems = startup_problems({"DATA_DIR": str(tmp_path), "OWNER_KEYS": "secret:", "OWNER_RATE_LIMIT": "lots",
                                 "NOTIFY_QUEUE_SIZE": 0, "NOTIFY": "log,webhook,nope"})
    text = "\n".join(problems)
    for expected in ("TWIN_OWNER_KEYS=secret:NAME", "TWIN_OWNER_RATE_LIMIT", "TWIN_NOTIFY_QUEUE_SIZE",
                     "TWIN_NOTIFY_WEBHOOK_URL", "unknown notify backend 'nope'"):
        assert expected in text
