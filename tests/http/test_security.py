"""Security headers on every response, without overriding a route's own choice."""

import pytest

from twin_server.errors import StartupError


@pytest.mark.parametrize("method, path", [("GET", "/health"), ("POST", "/chat"), ("GET", "/nowhere"), ("GET", "/metrics")])
def test_api_responses_get_the_headers(scripted_app, method, path):
    response = scripted_app().test_client().open(path, method=method, json={"message": "hi"})
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in response.headers


def test_the_page_keeps_its_own_policy_and_frame_ancestors(scripted_app):
    response = scripted_app(FRAME_ANCESTORS="https://me.example.com").test_client().get("/")
    assert response.status_code == 200
    assert "frame-ancestors https://me.example.com" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "same-origin"  # the page's, not ours
    assert "X-Frame-Options" not in response.headers  # the CSP decides who may frame the page
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_only_when_asked(scripted_app):
    response = scripted_app(HSTS=True).test_client().get("/health")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    with pytest.raises(StartupError) as caught:
        scripted_app(HSTS="maybe")
    assert any("TWIN_HSTS" in p for p in caught.value.problems)
