"""The chat page, its profile endpoint and CORS, through Flask's test client.

The page's behaviour in a real browser is in ``test_browser.py``.
"""

from html.parser import HTMLParser
from pathlib import Path

import pytest

from twin_server.errors import PersonaError, RateLimited, StartupError

STATIC = Path(__file__).resolve().parents[2] / "twin_server" / "static"
ORIGIN = "https://me.example.com"


def csp_directives(response) -> dict[str, str]:
    header = response.headers["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value
    return directives


# --- the page ----------------------------------------------------------------


def test_page_is_served_with_a_strict_content_security_policy(scripted_app):
    response = scripted_app().test_client().get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert '<textarea id="message"' in response.get_data(as_text=True)
    assert csp_directives(response) == {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "connect-src": "'self'",
        "object-src": "'none'",
        "frame-ancestors": "'self'",
        "base-uri": "'none'",
        "form-action": "'self'",
    }
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("https://me.example.com", "https://me.example.com"),
        ("'self', https://me.example.com https://*.me.example.com:8443", "'self' https://me.example.com https://*.me.example.com:8443"),
        ("'none'", "'none'"),
        ("  ", "'self'"),
    ],
)
def test_frame_ancestors_come_from_the_setting(scripted_app, setting, expected):
    response = scripted_app(FRAME_ANCESTORS=setting).test_client().get("/")
    assert csp_directives(response)["frame-ancestors"] == expected


@pytest.mark.parametrize("setting", ["https://a.example; script-src *", "'unsafe-inline'", "javascript:", "'none' 'self'"])
def test_a_bad_frame_ancestors_setting_stops_the_start(scripted_app, setting):
    with pytest.raises(StartupError, match="TWIN_FRAME_ANCESTORS"):
        scripted_app(FRAME_ANCESTORS=setting)


class _Inline(HTMLParser):
    """Collects whatever in the markup would need 'unsafe-inline' under the page's CSP."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "style":
            self.found.append("<style> element")
        if tag == "script":
            self._in_script = True
            if not attrs.get("src"):
                self.found.append("<script> without src")
            self.scripts.append(attrs.get("src") or "")
        for name in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"{name}= on <{tag}>")
        for name in ("href", "src", "action"):
            if (attrs.get(name) or "").lower().startswith(("javascript:", "http:", "https:", "//")):
                self.found.append(f"{name} outside the page's origin on <{tag}>")

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append("inline script text")


def test_the_page_needs_nothing_inline_and_nothing_from_elsewhere():
    parser = _Inline()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.found == []
    assert parser.scripts == ["static/chat.js"]


def test_the_page_script_never_writes_html():
    for name in ("chat.js", "embed.js"):
        source = (STATIC / name).read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, f"{name} uses {sink}"


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/static/chat.js", "text/javascript"),
        ("/static/embed.js", "text/javascript"),
        ("/static/chat.css", "text/css"),
        ("/static/twin.svg", "image/svg+xml"),
    ],
)
def test_static_files_are_served(scripted_app, path, mimetype):
    response = scripted_app().test_client().get(path)
    assert response.status_code == 200
    assert response.mimetype == mimetype


# --- /profile ----------------------------------------------------------------


def test_profile_gives_the_persona_name_and_intro(scripted_app):
    response = scripted_app().test_client().get("/profile")
    assert response.status_code == 200
    assert response.get_json() == {"name": "Test Person", "intro": "A person who tests", "model": "scripted"}


def test_profile_of_the_local_example_persona(local_app):
    body = local_app().test_client().get("/profile").get_json()
    assert body["name"] == "Ada Quill"
    assert body["intro"].startswith("Marine robotics engineer")


def test_a_broken_persona_fails_the_profile_but_not_the_page(scripted_app, scripted):
    client = scripted_app().test_client()
    scripted.persona.failures.append(PersonaError("persona.json is missing"))
    profile = client.get("/profile")
    assert profile.status_code == 500
    assert profile.mimetype == "application/problem+json"
    assert "persona.json" not in profile.get_data(as_text=True)
    assert client.get("/").status_code == 200


# --- CORS --------------------------------------------------------------------


def preflight(client, path="/chat", origin=ORIGIN, method="POST"):
    return client.options(
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "content-type"},
    )


def test_without_the_setting_there_are_no_cors_headers(scripted_app):
    client = scripted_app().test_client()
    response = client.post("/chat", json={"message": "hi"}, headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert not any(name.startswith("Access-Control-") for name in response.headers.keys())
    assert not any(name.startswith("Access-Control-") for name in preflight(client).headers.keys())


def test_preflight_from_an_allowed_origin(scripted_app):
    client = scripted_app(CORS_ORIGINS=f"https://other.example, {ORIGIN}/").test_client()
    response = preflight(client)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "DELETE" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in response.headers.get_all("Vary")[0]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert preflight(client, "/conversation/visitor-0001", method="DELETE").status_code == 204


def test_actual_request_from_an_allowed_origin_echoes_it(scripted_app):
    client = scripted_app(CORS_ORIGINS=ORIGIN).test_client()
    response = client.post("/chat", json={"message": "hi"}, headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response.headers["Vary"]
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_disallowed_origin_gets_no_cors_headers(scripted_app):
    client = scripted_app(CORS_ORIGINS=ORIGIN).test_client()
    response = client.post("/chat", json={"message": "hi"}, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]  # a cache must not hand this answer to the allowed origin
    refused = preflight(client, origin="https://evil.example")
    assert refused.status_code != 204
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Access-Control-Allow-Methods" not in refused.headers


def test_a_wildcard_allows_any_origin_without_credentials(scripted_app):
    client = scripted_app(CORS_ORIGINS="*").test_client()
    response = client.get("/health", headers={"Origin": "https://anyone.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert preflight(client, origin="https://anyone.example").headers["Access-Control-Allow-Origin"] == "*"


def test_errors_carry_cors_headers_so_the_widget_can_read_them(scripted_app, scripted):
    client = scripted_app(CORS_ORIGINS=ORIGIN, RETRY_LLM_MAX_ATTEMPTS=1).test_client()
    scripted.llm.steps.append(RateLimited("slow down", retry_after=5))
    response = client.post("/chat", json={"message": "hi"}, headers={"Origin": ORIGIN})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_preflight_to_an_unknown_path_is_not_answered(scripted_app):
    client = scripted_app(CORS_ORIGINS=ORIGIN).test_client()
    assert preflight(client, "/no-such-thing").status_code == 404


@pytest.mark.parametrize("setting", ["me.example.com", "https://me.example.com/path", "ftp://me.example.com"])
def test_a_bad_cors_origin_stops_the_start(scripted_app, setting):
    with pytest.raises(StartupError, match="TWIN_CORS_ORIGINS"):
        scripted_app(CORS_ORIGINS=setting)
