"""The owner's side on S3 through moto's server: events under the store's prefix, conversations listed, erasure."""

import pytest

from tests.doubles.moto_server import aws, moto_server  # noqa: F401  (fixtures)
from twin_server.app import create_app

KEY = "owner-key-s3-0123456789"
OWNER = {"Authorization": f"Bearer {KEY}"}
LEAD = "Hello, I'm Jane Doe: jane@example.com"
UNCOVERED = "What do you think about cryptocurrency?"


@pytest.fixture
def app(aws, tmp_path):
    bucket = aws.bucket("twin-owner")
    return create_app({"STORAGE": "s3", "S3_BUCKET": bucket, "S3_PREFIX": "site/sessions", "OWNER_KEYS": KEY,
                       "DATA_DIR": str(tmp_path / "unused"), "RATE_LIMIT": "off"})


def test_events_live_under_the_s3_prefix_and_go_with_their_conversation(app, aws, tmp_path):
    client = app.test_client()
    client.post("/chat", json={"message": LEAD, "session_id": "s3-visitor-1"})
    client.post("/chat", json={"message": UNCOVERED, "session_id": "s3-visitor-1"})
    client.post("/chat", json={"message": UNCOVERED, "session_id": "s3-visitor-2"})
    assert app.extensions["twin_server"].owner.delivery.drain(10)  # detected events are stored after the reply
    keys = aws.keys("twin-owner", "site/sessions/owner.events/")
    assert [k for k in keys if "/leads/" in k] and [k for k in keys if "/questions/" in k]
    assert not (tmp_path / "unused").exists()  # nothing on this machine's disk
    [lead] = client.get("/owner/leads", headers=OWNER).get_json()["leads"]
    assert (lead["email"], lead["name"], lead["session_id"]) == ("jane@example.com", "Jane Doe", "s3-visitor-1")
    [question] = client.get("/owner/unanswered", headers=OWNER).get_json()["questions"]
    assert question["count"] == 2

    listed = client.get("/owner/conversations?limit=1", headers=OWNER).get_json()
    assert len(listed["conversations"]) == 1 and listed["next_cursor"]
    rest = client.get(f"/owner/conversations?cursor={listed['next_cursor']}", headers=OWNER).get_json()
    assert {listed["conversations"][0]["session_id"], *(c["session_id"] for c in rest["conversations"])} == {
        "s3-visitor-1", "s3-visitor-2"}
    assert rest["next_cursor"] is None

    assert client.delete("/conversation/s3-visitor-1").status_code == 204
    assert client.get("/owner/leads", headers=OWNER).get_json()["leads"] == []
    [question] = client.get("/owner/unanswered", headers=OWNER).get_json()["questions"]
    assert question["session_ids"] == ["s3-visitor-2"]
    assert [k for k in aws.keys("twin-owner", "site/sessions/owner.events/") if "s3-visitor-1" in k] == [
        "site/sessions/owner.events/erased/s3-visitor-1.json"]  # the record of its erasure, gone an hour on
