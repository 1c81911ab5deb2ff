"""The notifiers for real: a webhook receiver, an SMTP server, Pushover's API on 127.0.0.1; retries and redelivery."""

import json
import logging
import time

import pytest
from click.testing import CliRunner

from tests.doubles.receiver import Receiver
from tests.doubles.smtp import smtp_server
from tests.doubles.tooled import OwnerTestPlugin
from twin_server.app import create_app, startup_problems
from twin_server.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

LEAD_MESSAGE = "Hi, I'm Jane Doe. I'd like to talk about a role: jane@example.com"


@pytest.fixture
def build(tmp_path, clock):
    def build(plugins=(), **config):
        return create_app({"DATA_DIR": str(tmp_path / "data"), "RATE_LIMIT": "off", **config}, plugins=plugins,
                          retry_options={"clock": clock, "sleep": clock.sleep})

    return build


def lead_turn(app, session="visitor-00001", message=LEAD_MESSAGE):
    response = app.test_client().post("/chat", json={"message": message, "session_id": session})
    assert response.status_code == 200
    return response


def owner_of(app):
    return app.extensions["twin_server"].owner


def test_a_webhook_failing_twice_gets_the_event_exactly_once(build, clock):
    with Receiver(fail_first=2) as receiver:
        app = build(NOTIFY="webhook", NOTIFY_WEBHOOK_URL=receiver.url)
        lead_turn(app)
        assert owner_of(app).delivery.drain(10)
        assert receiver.attempts == 3 and len(receiver.delivered) == 1
        assert len(clock.sleeps) == 2  # the core's retry, with its backoff
        assert owner_of(app).leads()[0].delivery == {"webhook": "delivered"}
        lead_turn(app)  # the same visitor and address again: not a new lead
        assert owner_of(app).delivery.drain(10) and len(receiver.delivered) == 1


def test_a_delivery_failing_after_its_retries_is_logged_kept_and_redelivered_by_the_inbox(
        build, tmp_path, caplog, monkeypatch):
    with Receiver(fail_first=3) as receiver:
        app = build(NOTIFY="webhook", NOTIFY_WEBHOOK_URL=receiver.url)
        with caplog.at_level(logging.INFO):
            lead_turn(app)
            assert owner_of(app).delivery.drain(10)
        assert receiver.attempts == 3 and receiver.delivered == []
        [error] = [r for r in caplog.records if r.levelno == logging.ERROR and "could not deliver" in r.getMessage()]
        assert "webhook" in error.getMessage() and receiver.url not in error.getMessage()
        assert owner_of(app).leads()[0].delivery == {"webhook": "failed"}

        monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("TWIN_NOTIFY", "webhook")
        monkeypatch.setenv("TWIN_NOTIFY_WEBHOOK_URL", receiver.url)
        shown = CliRunner().invoke(main, ["inbox", "--json"])
        assert shown.exit_code == 0 and json.loads(shown.stdout)["undelivered"] == 1
        retried = CliRunner().invoke(main, ["inbox", "--retry", "--json"])
        assert retried.exit_code == 0, retried.output
        report = json.loads(retried.stdout)
        assert (report["redelivered"], report["still_undelivered"], report["undelivered"]) == (1, 0, 0)
        assert [p["email"] for p in receiver.delivered] == ["jane@example.com"]
        assert CliRunner().invoke(main, ["inbox", "--retry"]).stdout.startswith("Leads (1)")
        assert len(receiver.delivered) == 1  # never twice


def test_a_webhook_refusing_the_event_is_not_retried(build):
    with Receiver(fail_first=10, fail_status=404) as receiver:
        app = build(NOTIFY="webhook", NOTIFY_WEBHOOK_URL=receiver.url)
        lead_turn(app)
        assert owner_of(app).delivery.drain(10)
        assert receiver.attempts == 1 and owner_of(app).leads()[0].delivery == {"webhook": "failed"}


def test_a_slow_webhook_does_not_hold_the_reply(build):
    with Receiver(delay=2.0) as receiver:
        app = build(NOTIFY="webhook", NOTIFY_WEBHOOK_URL=receiver.url)
        lead_turn(app)
        assert receiver.delivered == []  # the reply is out while the webhook still takes its time
        assert len(receiver.wait_for(1)) == 1


def test_the_webhook_url_may_be_a_secret(build, monkeypatch):
    with Receiver() as receiver:
        monkeypatch.setenv("SLACK_HOOK", receiver.url)
        app = build(NOTIFY="webhook", NOTIFY_WEBHOOK_URL="secret:SLACK_HOOK")
        lead_turn(app)
        assert receiver.wait_for(1)[0]["event"] == "lead"


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_the_email_notifier_sends_through_smtp_with_tls_and_login(build, tmp_path, monkeypatch, tls):
    with smtp_server(tmp_path, tls=tls, login=("twin", "s3cret")) as smtp:
        monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "s3cret")
        app = build(NOTIFY="email", NOTIFY_SMTP_URL=smtp.url.replace("://", "://twin@"),
                    NOTIFY_SMTP_CA_FILE=str(smtp.ca_file), NOTIFY_EMAIL_TO="owner@example.org",
                    NOTIFY_EMAIL_FROM="twin@example.org")
        lead_turn(app)
        [message] = smtp.wait_for(1)
        assert message["Subject"] == "New lead from your twin"
        assert (message["To"], message["From"], message["Reply-To"]) == ("owner@example.org", "twin@example.org",
                                                                         "jane@example.com")
        assert "Jane Doe <jane@example.com>" in message.get_payload()
        assert owner_of(app).delivery.drain(10)
        assert owner_of(app).leads()[0].delivery == {"email": "delivered"}


def test_the_email_notifier_refuses_a_server_without_starttls(build, tmp_path):
    with smtp_server(tmp_path, tls="none") as smtp:
        app = build(NOTIFY="email", NOTIFY_SMTP_URL=smtp.url.replace("smtp+insecure", "smtp"),
                    NOTIFY_EMAIL_TO="owner@example.org")
        lead_turn(app)
        assert owner_of(app).delivery.drain(10)
        assert smtp.messages == [] and owner_of(app).leads()[0].delivery == {"email": "failed"}


def test_a_wrong_smtp_password_fails_the_delivery(build, tmp_path, monkeypatch):
    with smtp_server(tmp_path, tls="starttls", login=("twin", "s3cret")) as smtp:
        monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "wrong")
        app = build(NOTIFY="email", NOTIFY_SMTP_URL=smtp.url.replace("://", "://twin@"),
                    NOTIFY_SMTP_CA_FILE=str(smtp.ca_file), NOTIFY_EMAIL_TO="owner@example.org")
        lead_turn(app)
        assert owner_of(app).delivery.drain(10)
        assert smtp.messages == [] and owner_of(app).leads()[0].delivery == {"email": "failed"}


def test_pushover_gets_the_event_with_the_token_from_the_secrets(build, monkeypatch):
    with Receiver(answer={"status": 1}) as api:
        monkeypatch.setenv("PUSHOVER_TOKEN", "app-token-1")
        app = build(NOTIFY="pushover", PUSHOVER_USER="user-key-1", PUSHOVER_API_URL=api.url)
        app.test_client().post("/chat", json={"message": "What do you think about cryptocurrency?"})
        [form] = api.wait_for(1)
        assert (form["token"], form["user"]) == ("app-token-1", "user-key-1")
        assert form["title"] == "A question your twin could not answer"
        assert form["message"] == "Your twin could not answer: What do you think about cryptocurrency?"


def test_notifier_settings_are_checked_at_startup_every_problem_listed(tmp_path, monkeypatch):
    monkeypatch.delenv("PUSHOVER_TOKEN", raising=False)
    problems = "\n".join(startup_problems({
        "DATA_DIR": str(tmp_path), "NOTIFY": "webhook,email,pushover",
        "NOTIFY_WEBHOOK_URL": "ftp://example.com/hook", "NOTIFY_SMTP_URL": "smtp://user:pw@mail.example.com",
    }))
    for expected in ("TWIN_NOTIFY_WEBHOOK_URL must be an http", "must not hold a password", "TWIN_PUSHOVER_USER"):
        assert expected in problems
    assert "pw" not in problems.replace("password", "")


def test_a_full_queue_leaves_events_pending_for_the_inbox(build):
    plugin = OwnerTestPlugin()
    plugin.notifier.delay = 0.5
    app = build(plugins=[plugin], NOTIFY="recorder", NOTIFY_QUEUE_SIZE=1)
    for n in range(4):
        lead_turn(app, session=f"visitor-0000{n}")
    owner = owner_of(app)
    assert owner.delivery.drain(10)
    delivered = {event.id for event in plugin.notifier.events}
    assert 1 <= len(delivered) < 4
    pending = [lead for lead in owner.leads() if lead.delivery["recorder"] == "pending"]
    assert len(pending) == 4 - len(delivered)
    assert owner.undelivered() == []  # maybe still queued somewhere: not yet
    assert owner.redeliver(now=time.time() + 3600) == (len(pending), 0)
    assert {event.id for event in plugin.notifier.events} == {lead.id for lead in owner.leads()}
    assert len(plugin.notifier.events) == 4
