"""The whole HTTP API on AWS: S3 memory and persona, Secrets Manager, through moto's server.

Configured the way an operator does it, with TWIN_* environment variables and
the installed entry points; the language model stays ``offline``.
"""

import json
from pathlib import Path

import pytest

from tests.doubles.moto_server import aws, moto_server  # noqa: F401  (fixtures)
from twin_local.persona import example_persona_dir
from twin_server.app import create_app


@pytest.fixture
def bucket(aws, monkeypatch):
    name = aws.bucket("twin-shared")
    for path in Path(example_persona_dir()).iterdir():
        aws.s3.put_object(Bucket=name, Key=f"site/persona/{path.name}", Body=path.read_bytes())
    for key, value in {
        "STORAGE": "s3", "PERSONA": "s3", "SECRETS": "aws", "LLM": "offline",
        "S3_BUCKET": name, "S3_PREFIX": "site/sessions/", "PERSONA_S3_PREFIX": "site/persona",
        "PERSONA_S3_TTL": "0",
    }.items():
        monkeypatch.setenv(f"TWIN_{key}", value)
    return name


@pytest.fixture
def client(bucket):
    return create_app().test_client()


def chat(client, message, session_id=None):
    body = {"message": message} if session_id is None else {"message": message, "session_id": session_id}
    return client.post("/chat", json=body)


def test_ready_names_the_aws_backends_and_the_s3_persona(client):
    body = client.get("/ready").get_json()
    assert body["backends"] == {"storage": "s3", "persona": "s3", "secrets": "aws", "llm": "offline", "notify": "log"}
    facts = json.loads((Path(example_persona_dir()) / "facts.json").read_text())
    assert body["persona"] == facts["full_name"]


def test_a_conversation_is_kept_in_s3(aws, bucket, client):
    first = chat(client, "What is your name?").get_json()
    session = first["session_id"]
    assert first["history_saved"] is True
    assert chat(client, "Where are you based?", session).status_code == 200
    messages = client.get(f"/conversation/{session}").get_json()["messages"]
    assert [m["content"] for m in messages[::2]] == ["What is your name?", "Where are you based?"]
    assert messages[1]["content"] == first["response"]
    assert aws.keys(bucket, "site/sessions/") == [f"site/sessions/{session}/head.jsonl"]
    assert client.delete(f"/conversation/{session}").status_code == 204
    assert client.get(f"/conversation/{session}").get_json()["messages"] == []
    # Only the record that its events were erased (``DocumentEventStore``: gone an hour on) names it.
    assert aws.keys(bucket, "site/sessions/") == [f"site/sessions/owner.events/erased/{session}.json"]
    assert client.delete(f"/conversation/{session}").status_code == 204


def test_machines_behind_a_load_balancer_share_the_memory(bucket):
    one, two = create_app().test_client(), create_app().test_client()
    chat(one, "Hello", "balanced-01")
    chat(two, "What do you do?", "balanced-01")
    chat(one, "Thanks", "balanced-01")
    for machine in (one, two):
        messages = machine.get("/conversation/balanced-01").get_json()["messages"]
        assert [m["content"] for m in messages[::2]] == ["Hello", "What do you do?", "Thanks"]


def test_a_persona_edit_is_picked_up_without_a_restart(aws, bucket, client):
    aws.s3.put_object(Bucket=bucket, Key="site/persona/facts.json", Body=json.dumps({"full_name": "Grace Lin"}).encode())
    assert client.get("/ready").get_json()["persona"] == "Grace Lin"


def test_a_missing_persona_is_a_500_until_it_is_uploaded(aws, bucket, monkeypatch):
    monkeypatch.setenv("TWIN_PERSONA_S3_PREFIX", "nobody/")
    client = create_app().test_client()
    response = chat(client, "Hi")
    assert response.status_code == 500
    assert "s3://" not in response.get_data(as_text=True)
    assert client.get("/ready").status_code == 503
    aws.s3.put_object(Bucket=bucket, Key="nobody/facts.json", Body=json.dumps({"full_name": "Grace Lin"}).encode())
    assert chat(client, "What is your name?").status_code == 200


@pytest.mark.parametrize("session_id", ["..%2F..%2Fx", "a b c d e f", "short", "x" * 129])
def test_hostile_session_ids_touch_no_object(aws, bucket, client, session_id):
    assert chat(client, "hi", session_id).status_code == 400
    assert 400 <= client.get(f"/conversation/{session_id}").status_code < 500
    assert aws.keys(bucket, "site/sessions/") == []


def test_a_missing_bucket_makes_the_twin_not_ready(bucket, monkeypatch):
    monkeypatch.setenv("TWIN_S3_BUCKET", "no-such-bucket")
    monkeypatch.setenv("TWIN_PERSONA_S3_BUCKET", bucket)
    client = create_app().test_client()
    assert client.get("/ready").status_code == 503
    response = client.get("/conversation/some-session-1")
    assert response.status_code == 500 and response.get_json()["title"] == "Server misconfigured"
