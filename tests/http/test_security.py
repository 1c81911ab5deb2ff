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


def test_the_first_content_security_policy_decides_on_framing(scripted_app):
    app = scripted_app()

    @app.get("/two-policies")
    def two_policies():
        return "", 204, [("Content-Security-Policy", "frame-ancestors 'self'"),
                         ("Content-Security-Policy", "default-src 'none'")]

    response = app.test_client().get("/two-policies")
    assert "X-Frame-Options" not in response.headers  # as headers.get("Content-Security-Policy") reads it: the first
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_routes_own_header_is_kept_whatever_its_case(scripted_app):
    app = scripted_app()

    @app.get("/own-referrer")
    def own_referrer():
        return "", 204, [("REFERRER-POLICY", "origin"), ("x-Frame-options", "SAMEORIGIN")]

    response = app.test_client().get("/own-referrer")
    assert response.headers.getlist("Referrer-Policy") == ["origin"]
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
