"""The app's JSON (orjson through Flask's provider) answers and reads what the standard library did."""

import datetime
import json

import pytest


@pytest.fixture
def app(local_app):
    return local_app()


def test_responses_are_utf8_json_with_sorted_keys(app):
    client = app.test_client()
    response = client.post("/chat", json={"message": "Olá, où travaillez-vous ? 你好"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    raw = response.get_data()
    assert json.loads(raw.decode("utf-8")) == response.get_json()
    keys = list(json.loads(raw))
    assert keys == sorted(keys)


def test_what_orjson_cannot_write_is_written_as_flask_did(app):
    value = {"b": 2**70, "a": datetime.datetime(2026, 12, 1, 16, 0, tzinfo=datetime.timezone.utc)}
    with app.app_context():
        written = app.json.dumps(value)
    assert json.loads(written) == {"a": "Tue, 01 Dec 2026 16:00:00 GMT", "b": 2**70}


def test_what_orjson_cannot_read_is_read_as_json_allows(app):
    with app.app_context():
        assert app.json.loads('{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
        assert app.json.loads(b'["\\ud800"]') == ["\ud800"]
        assert app.json.loads(bytearray(b'{"n": 12345678901234567890123}')) == {"n": 12345678901234567890123}
        assert app.json.loads(b'[1.5, 9223372036854775807, "x"]') == [1.5, 9223372036854775807, "x"]
        with pytest.raises(ValueError):
            app.json.loads(b'{"n": ')


@pytest.mark.parametrize("body", [b'{"message": "hi", "session_id": 123456789012345678901234567890}',
                                  b'{"message": NaN}', b'{"message": "hi"', b'\xff\xfe{"message": "hi"}',
                                  b'{"message": "hi", "\\ud800": 1}'])
def test_bodies_json_refuses_are_400_problems(app, body):
    response = app.test_client().post("/chat", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
