"""What the app believes of the headers a reverse proxy adds (``TWIN_TRUSTED_PROXIES``)."""

import pytest

from twin_server.errors import StartupError

EVIL = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "8443",
        "X-Forwarded-Prefix": "/evil"}


def test_a_forwarded_host_cannot_steer_a_redirect(scripted_app):
    """The attack of issue 18: a 308 for a doubled slash pointed at the host the client named."""
    client = scripted_app(TRUSTED_PROXIES=1).test_client()
    redirect = client.get("/static//chat.js", headers=EVIL)
    assert redirect.status_code == 308
    assert redirect.headers["Location"] == "https://localhost/static/chat.js"  # X-Forwarded-Proto is believed


def test_a_forwarded_host_is_believed_only_when_a_setting_says_so(scripted_app):
    client = scripted_app(TRUSTED_PROXIES=1, TRUSTED_FORWARDED_HOST="true").test_client()
    redirect = client.get("/static//chat.js", headers=EVIL)
    assert redirect.headers["Location"] == "https://evil.example/static/chat.js"  # the operator's proxy sets it


def test_without_trusted_proxies_no_forwarded_header_is_believed(scripted_app):
    client = scripted_app(TRUSTED_FORWARDED_HOST="true").test_client()
    assert client.get("/static//chat.js", headers=EVIL).headers["Location"] == "http://localhost/static/chat.js"


def test_bad_proxy_settings_stop_the_start(scripted_app):
    with pytest.raises(StartupError) as caught:
        scripted_app(TRUSTED_PROXIES=-1, TRUSTED_FORWARDED_HOST="perhaps")
    assert {"TWIN_TRUSTED_PROXIES", "TWIN_TRUSTED_FORWARDED_HOST"} <= {p.split()[0] for p in caught.value.problems}
