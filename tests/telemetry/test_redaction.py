"""No secret in any log line, whoever writes it (issue 18, item 9), and one JSON record per line (item 11)."""

from __future__ import annotations

import io
import json
import logging
import urllib.parse

import pytest

from tests.doubles.fake_openai import FakeOpenAI
from twin_server.app import create_app
from twin_server.telemetry import logs
from twin_server.telemetry.redaction import REDACTED, SecretRegistry, register_config, secrets, url_credentials

KEY = "sk-live-9f8e7d6c5b4a39281706"
PASSWORD = "hunter2-p@ss/w0rd"
OWNER_KEYS = "owner-key-alpha-123,owner-key-beta-456"


@pytest.fixture
def log_output():
    """The production root handler (JSON, INFO) writing to a buffer; the previous logging restored after."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.configure_logging("json", "INFO", stream=stream)
    yield stream
    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)
    root.setLevel(level)
    secrets.clear()


def test_an_upstream_echoing_the_key_and_a_password_in_the_base_url_reach_no_log_line(
    log_output, tmp_path, monkeypatch, clock
):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI() as server:
        base_url = server.base_url.replace("http://", f"http://operator:{urllib.parse.quote(PASSWORD, safe='')}@")
        app = create_app(
            {"LLM": "openai", "SECRETS": "env", "OPENAI_BASE_URL": base_url, "API_KEYS": OWNER_KEYS,
             "DATA_DIR": str(tmp_path / "data"), "RETRY_LLM_MAX_ATTEMPTS": 1},
            retry_options={"clock": clock, "sleep": clock.sleep},
        )
        client = app.test_client()
        server.reply("Fine.")
        assert client.post("/chat", json={"message": "hi"}).status_code == 200
        server.error(500, f"invalid key {KEY}", code=KEY, headers={"x-request-id": f"req-{KEY}"})
        assert client.post("/chat", json={"message": "hi"}).status_code == 503
        server.error(400, "bad request", code=KEY, headers={"x-request-id": f"req-{KEY}"})
        assert client.post("/chat", json={"message": "hi"}).status_code == 502
        logging.getLogger("botocore.credentials").info("a third-party line quoting %s", "owner-key-beta-456")
    text = log_output.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert any(line["logger"].startswith("httpx") and "HTTP Request" in line["message"] for line in lines)
    assert any(line["level"] == "ERROR" for line in lines)
    assert text.count(REDACTED) >= 4
    for secret in (KEY, PASSWORD, urllib.parse.quote(PASSWORD, safe=""), "owner-key-alpha-123", "owner-key-beta-456"):
        assert secret not in text, secret


def test_registered_forms_of_a_value():
    registry = SecretRegistry()
    registry.register('s3cr"et-value')
    registry.register("first-key, second-key")
    registry.register("twin")  # too short to be a secret: it would blank out every logger's name
    assert registry.redact('{"x": "s3cr\\"et-value"} and s3cr"et-value') == f'{{"x": "{REDACTED}"}} and {REDACTED}'
    assert registry.redact("first-key then second-key") == f"{REDACTED} then {REDACTED}"
    assert registry.redact("twin_server.request") == "twin_server.request"


def test_url_credentials_are_found_as_written_and_decoded():
    found = url_credentials("redis://:p%40ss-word@cache:6379/0 and https://user:tok3n-value@example.com/v1")
    assert {"p%40ss-word", "p@ss-word", "tok3n-value", "user:tok3n-value"} <= set(found)
    assert url_credentials("https://api.openai.com/v1") == []


def test_only_secret_looking_settings_are_registered():
    registry = SecretRegistry()
    register_config({"API_KEYS": "key-one-111", "OPENAI_MAX_TOKENS": "1024", "SECRETS": "vault",
                     "DATA_DIR": "/srv/data", "OWNER_KEY": "owner-000", "API_KEYS_ALT": "secret:NAME"}, registry)
    assert registry.redact("key-one-111 1024 vault /srv/data owner-000") == f"{REDACTED} 1024 vault /srv/data {REDACTED}"


def test_secret_settings_given_as_json_lists_or_objects_are_registered_item_by_item():
    registry = SecretRegistry()  # TWIN_API_KEYS='["owner-key-alpha-123", ...]' reaches the config as a list
    register_config({"API_KEYS": ["owner-key-alpha-123", "owner-key-beta-456"],
                     "WEBHOOK_TOKEN": {"primary": "hook-token-7777"},
                     "PROXIES": ["https://user:list-pass-999@proxy.example"], "MAX_TOKENS": [1024]}, registry)
    line = "owner-key-alpha-123 owner-key-beta-456 hook-token-7777 list-pass-999 1024"
    assert registry.redact(line) == f"{REDACTED} {REDACTED} {REDACTED} {REDACTED} 1024"


def test_a_non_ascii_secret_is_redacted_as_written_and_as_json_escapes_it():
    registry = SecretRegistry()
    registry.register("pässwörd-geheim")
    assert registry.redact('{"a": "pässwörd-geheim"}') == f'{{"a": "{REDACTED}"}}'
    assert registry.redact(json.dumps({"a": "pässwörd-geheim"})) == f'{{"a": "{REDACTED}"}}'  # \u00e4 escapes


def test_line_breaks_in_a_request_path_stay_inside_one_json_log_line(log_output, local_app):
    client = local_app().test_client()
    for path in ("/nowhere\u2028injected", "/x\u2029y", "/a\x85b", "/health"):
        client.get(path)
    text = log_output.getvalue()
    records = [line for line in text.split("\n") if line]
    assert len(text.splitlines()) == len(records) >= 4
    paths = [json.loads(line).get("path") for line in records]
    assert {"/nowhere\u2028injected", "/x\u2029y", "/a\x85b"} <= set(paths)


def test_line_breaks_in_a_message_stay_inside_one_stored_json_line(local_app, tmp_path):
    client = local_app().test_client()
    text = "first\u2028second\u2029third\x85fourth"
    response = client.post("/chat", json={"message": text, "session_id": "breaks-0001"})
    assert response.status_code == 200
    stored = (tmp_path / "data" / "breaks-0001.jsonl").read_text(encoding="utf-8")
    assert len(stored.splitlines()) == 2
    assert client.get("/conversation/breaks-0001").get_json()["messages"][0]["content"] == text
