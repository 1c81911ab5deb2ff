"""API keys: /v1 behind keys when set, the whole API with TWIN_PUBLIC_CHAT=false, keys never shown."""

from __future__ import annotations

import logging

import pytest

from twin_server.http import auth
from twin_server.errors import StartupError

KEYS = "sk-first-0001, sk-second-0002"
PROBLEM = "application/problem+json"


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def assert_401_problem(response):
    assert response.status_code == 401
    assert response.mimetype == PROBLEM
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return response.get_json()


def assert_401_envelope(response):
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    error = response.get_json()["error"]
    assert error["type"] == "authentication_error"
    return error


def test_without_keys_everything_is_open(scripted_app):
    client = scripted_app().test_client()
    assert client.get("/v1/models").status_code == 200
    assert client.post("/chat", json={"message": "hi"}).status_code == 200


def test_with_keys_v1_needs_one_and_the_chat_stays_public(scripted_app):
    client = scripted_app(API_KEYS=KEYS).test_client()
    assert "required" in assert_401_envelope(client.get("/v1/models"))["message"]
    assert "not valid" in assert_401_envelope(client.get("/v1/models", headers=bearer("sk-nope")))["message"]
    assert_401_envelope(client.get("/v1/unknown"))
    assert_401_envelope(client.post("/v1/chat/completions", json={}))
    assert client.get("/v1/models", headers=bearer("sk-first-0001")).status_code == 200
    assert client.get("/v1/models", headers=bearer("sk-second-0002")).status_code == 200
    assert client.get("/v1/models", headers={"X-API-Key": "sk-second-0002"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Basic sk-first-0001"}).status_code == 401
    assert client.post("/chat", json={"message": "hi"}).status_code == 200


def test_a_private_chat_needs_a_key_everywhere_but_the_probes(scripted_app):
    client = scripted_app(API_KEYS=KEYS, PUBLIC_CHAT="false").test_client()
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert_401_problem(client.post("/chat", json={"message": "hi"}))
    assert_401_problem(client.post("/chat/stream", json={"message": "hi"}))
    assert_401_problem(client.get("/conversation/visitor-0001"))
    assert_401_problem(client.post("/chat", json={"message": "hi"}, headers={"X-API-Key": "sk-wrong"}))
    assert_401_envelope(client.get("/v1/models"))
    assert client.post("/chat", json={"message": "hi"}, headers={"X-API-Key": "sk-first-0001"}).status_code == 200
    assert client.get("/conversation/visitor-0001", headers=bearer("sk-second-0002")).status_code == 200


def test_keys_can_come_from_a_secret(scripted_app, scripted):
    scripted.secrets.values["TWIN_KEYS"] = "sk-from-secret-1,sk-from-secret-2"
    client = scripted_app(API_KEYS="secret:TWIN_KEYS").test_client()
    assert client.get("/v1/models", headers=bearer("sk-from-secret-2")).status_code == 200
    assert_401_envelope(client.get("/v1/models", headers=bearer("secret:TWIN_KEYS")))
    assert_401_envelope(client.get("/v1/models", headers=bearer("TWIN_KEYS")))


def test_a_missing_key_secret_fails_closed_without_saying_why(scripted_app):
    response = scripted_app(API_KEYS="secret:NOT_THERE").test_client().get("/v1/models", headers=bearer("sk-x"))
    assert response.status_code == 500
    assert "NOT_THERE" not in response.get_data(as_text=True)


def test_the_secret_is_reread_after_its_cache_time(clock):
    reads = []
    values = iter(["sk-old", "sk-new"])

    def read(name):
        reads.append(name)
        return next(values)

    ring = auth.KeyRing([], "KEYS", ttl=300, clock=clock)
    assert ring.matches("sk-old", read) and ring.matches("sk-old", read)
    assert reads == ["KEYS"]
    clock.now += 300
    assert ring.matches("sk-new", read) and not ring.matches("sk-old", read)
    assert reads == ["KEYS", "KEYS"]


def test_every_key_is_compared_even_after_a_match(monkeypatch):
    compared = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: compared.append(b) or real(a, b))
    ring = auth.KeyRing(["k1", "k2", "k3"])
    assert ring.matches("k1", read_secret=None)
    assert len(compared) == 3


@pytest.mark.parametrize(
    "config, message",
    [
        ({"PUBLIC_CHAT": "false"}, "TWIN_PUBLIC_CHAT=false needs API keys"),
        ({"PUBLIC_CHAT": "false", "API_KEYS": " , "}, "TWIN_PUBLIC_CHAT=false needs API keys"),
        ({"API_KEYS": "secret: "}, "secret:NAME needs the name"),
        ({"PUBLIC_CHAT": "maybe"}, "TWIN_PUBLIC_CHAT must be true or false"),
    ],
)
def test_bad_settings_stop_the_start(scripted_app, config, message):
    with pytest.raises(StartupError, match=message):
        scripted_app(**config)


def test_keys_are_never_logged_or_echoed(scripted_app, caplog):
    client = scripted_app(API_KEYS=KEYS, PUBLIC_CHAT="false").test_client()
    with caplog.at_level(logging.DEBUG):
        wrong = client.post("/chat", json={"message": "hi"}, headers=bearer("sk-guessed-9999"))
        right = client.get("/v1/models", headers=bearer("sk-first-0001"))
    assert wrong.status_code == 401 and right.status_code == 200
    assert caplog.records, "the refusal should be logged"
    for key in ("sk-guessed-9999", "sk-first-0001", "sk-second-0002"):
        assert key not in caplog.text
        assert key not in wrong.get_data(as_text=True)
