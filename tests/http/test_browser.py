"""The chat page in a real browser: Playwright driving Debian's Chromium against gunicorn.

One gunicorn process (``tests.doubles.page_app``: the example persona, a
filesystem store in a temp dir and a slow, word-by-word test LLM) and one
Chromium serve the whole module; each test gets a fresh browser context, so a
fresh localStorage. The browser may reach 127.0.0.1 only; a request anywhere
else, a script error or a Content-Security-Policy violation fails the test.
Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.doubles.page_app import XSS_REPLY
from tests.doubles.servers import ROOT, gunicorn

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SESSION_KEY = "twin-server:session"

REPLY = ".messages .from-twin"
DONE_REPLY = ".messages .from-twin:not(.pending):not(.streaming)"


class PersonalSite(http.server.BaseHTTPRequestHandler):
    """Someone's own site on another origin, embedding the twin with the documented snippet."""

    twin = ""

    def do_GET(self):
        body = (
            "<!doctype html><html lang=en><head><title>Ada's site</title></head><body><h1>Ada's site</h1>"
            f'<script src="{self.twin}/static/embed.js" data-twin="{self.twin}" async></script></body></html>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def personal_site():
    """The base URL of ``PersonalSite``, a real server on 127.0.0.1 (a different origin from the twin's)."""
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PersonalSite)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, personal_site):
    env = {
        "TWIN_DATA_DIR": str(tmp_path_factory.mktemp("page-data")),
        "TWIN_LLM": "page-test",
        "TWIN_RETRY_LLM_MAX_ATTEMPTS": "1",
        "TWIN_CORS_ORIGINS": personal_site,
        "TWIN_FRAME_ANCESTORS": f"'self' {personal_site}",
    }
    with gunicorn(env, app="tests.doubles.page_app:app", workers=1, threads=8) as url:
        PersonalSite.twin = url
        yield url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's chromium package "
            "(`apt-get install -y chromium`; `make test` installs it).",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watch:
    """What a browser context did that it must not: leave 127.0.0.1, throw, break the CSP."""

    def __init__(self) -> None:
        self.outside: list[str] = []
        self.errors: list[str] = []

    def route(self, route) -> None:
        url = route.request.url
        host = urlsplit(url).hostname
        if host == "127.0.0.1" or url.startswith(("data:", "blob:")):
            route.fallback()
        else:
            self.outside.append(url)
            route.abort()

    def attach(self, page) -> None:
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on(
            "console",
            lambda message: self.errors.append(f"console: {message.text}")
            if message.type == "error" and ("Content Security Policy" in message.text or "Refused to" in message.text)
            else None,
        )


@pytest.fixture
def open_page(browser, server):
    """``open_page(viewport=..., color_scheme=...)``: a fresh context's page at the twin's ``/``."""
    contexts = []
    watch = Watch()

    def open_(viewport=DESKTOP, color_scheme="light", path="/"):
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme, reduced_motion="reduce")
        context.route("**/*", watch.route)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        watch.attach(page)
        page.goto(server + path)
        page.wait_for_selector("#twin-name:text('Ada Quill')")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert watch.outside == [], "the page reached beyond 127.0.0.1"
    assert watch.errors == []


def send(page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")


def wait_count(page, selector: str, count: int) -> None:
    page.wait_for_function("([s, n]) => document.querySelectorAll(s).length === n", arg=[selector, count])


def last_reply(page):
    page.wait_for_selector(DONE_REPLY)
    return page.locator(REPLY).last


def stored(server, session_id):
    return requests.get(f"{server}/conversation/{session_id}", timeout=10).json()["messages"]


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_reply_streams_in_and_the_conversation_survives_a_reload(open_page, server):
    page = open_page()
    assert page.locator("#twin-intro").inner_text().startswith("Marine robotics engineer")
    assert page.locator("#welcome").is_visible()
    send(page, "What do you work on?")

    page.wait_for_selector(f"{REPLY}.pending .typing")  # the typing indicator, before the first piece
    partial = page.wait_for_function(
        """() => {
            const reply = document.querySelector('.messages .from-twin.streaming .text');
            return reply && reply.textContent.trim().length > 0 && reply.textContent;
        }"""
    ).json_value()
    screenshot(page, "page-streaming.png")
    reply = last_reply(page)
    final = reply.locator(".text").inner_text()
    assert "Tidewater Labs" in final
    assert len(partial) < len(final) and final.startswith(partial.strip().split()[0])
    assert page.locator(".messages .from-user .text").inner_text() == "What do you work on?"
    assert page.locator("#welcome").is_hidden()
    assert page.evaluate("document.activeElement.id") == "message"
    page.wait_for_selector("#announcer:text('Ada Quill said:')")

    session_id = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")
    assert [m["role"] for m in stored(server, session_id)] == ["user", "assistant"]

    send(page, "Which languages do you speak?")
    wait_count(page, DONE_REPLY, 2)
    screenshot(page, "page-desktop.png")

    page.reload()
    wait_count(page, ".messages .message", 4)
    texts = page.locator(".messages .message .text").all_inner_texts()
    assert texts[0] == "What do you work on?" and texts[2] == "Which languages do you speak?"
    assert "Tidewater Labs" in texts[1]
    assert page.evaluate(f"localStorage.getItem('{SESSION_KEY}')") == session_id
    assert page.locator("#delete-conversation").is_enabled()

    phone = open_page(viewport=PHONE)
    phone.evaluate(f"localStorage.setItem('{SESSION_KEY}', '{session_id}')")
    phone.reload()
    wait_count(phone, ".messages .message", 4)
    no_overflow = phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert no_overflow, "the page scrolls sideways at phone width"
    screenshot(phone, "page-phone.png")
    phone.set_viewport_size({"width": 360, "height": 740})
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "sideways scroll at 360px"
    assert phone.locator("#new-conversation").is_visible() and phone.locator("#send").is_visible()

    dark = open_page(viewport=DESKTOP, color_scheme="dark")
    screenshot(dark, "page-desktop-dark-welcome.png")


def test_new_conversation_and_delete(open_page, server):
    page = open_page()
    send(page, "Hello!")
    last_reply(page)
    first_session = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")

    page.click("#new-conversation")
    assert page.locator(".messages .message").count() == 0
    assert page.locator("#welcome").is_visible()
    assert page.evaluate(f"localStorage.getItem('{SESSION_KEY}')") is None
    assert page.locator("#delete-conversation").is_disabled()
    assert page.evaluate("document.activeElement.id") == "message"
    assert len(stored(server, first_session)) == 2  # a new conversation forgets, it does not delete

    send(page, "Where are you based?")
    assert "Lisbon" in last_reply(page).inner_text()
    second_session = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")
    assert second_session != first_session

    page.click("#delete-conversation")
    dialog = page.locator("dialog#confirm-delete")
    assert dialog.is_visible()
    assert page.evaluate("document.activeElement.textContent") == "Keep it"
    page.keyboard.press("Escape")
    assert dialog.is_hidden()
    assert page.evaluate("document.activeElement.id") == "delete-conversation"
    assert page.locator(".messages .message").count() == 2

    page.click("#delete-conversation")
    screenshot(page, "page-confirm-delete.png")
    page.click("#confirm-delete-button")
    wait_count(page, ".messages .message", 0)
    assert page.evaluate(f"localStorage.getItem('{SESSION_KEY}')") is None
    assert stored(server, second_session) == []
    assert page.evaluate("document.activeElement.id") == "message"
    assert page.locator("#status").inner_text() == "Your conversation was deleted."
    page.reload()
    page.wait_for_selector("#welcome")
    assert page.locator(".messages .message").count() == 0


def test_a_busy_backend_is_a_friendly_line_and_the_message_is_kept(open_page):
    page = open_page()
    send(page, "[busy] Are you there?")
    notice = page.locator("#notice")
    notice.wait_for()
    text = notice.inner_text()
    assert re.search(r"Ada Quill is busy right now\. Try again in 5 s\.", text), text
    assert not re.search(r"[{}]|urn:|status|Traceback", text)
    assert page.input_value("#message") == "[busy] Are you there?"
    assert page.locator(".messages .message").count() == 0
    assert page.evaluate("document.activeElement.id") == "message"
    screenshot(page, "page-error.png")

    page.fill("#message", "Hi")  # the visitor resends: the notice goes, the reply comes
    page.press("#message", "Enter")
    last_reply(page)
    assert notice.is_hidden()


def test_a_reply_cut_mid_stream_is_kept_and_marked(open_page, server):
    page = open_page()
    send(page, "[cut] Tell me a long story")
    notice = page.locator("#notice")
    notice.wait_for()
    assert "unavailable right now" in notice.inner_text()
    reply = page.locator(REPLY).last
    assert reply.locator(".text").inner_text().strip() == "Let me think about"
    assert "Reply interrupted" in reply.inner_text()
    assert page.input_value("#message") == "[cut] Tell me a long story"
    session_id = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")
    assert stored(server, session_id)[-1]["complete"] is False

    page.reload()
    wait_count(page, ".messages .message", 2)
    assert "Reply interrupted" in page.locator(REPLY).last.inner_text()


def test_markup_in_a_reply_is_shown_as_text_and_never_runs(open_page):
    page = open_page()
    send(page, "[xss] show me some html")
    reply = last_reply(page)
    assert reply.locator(".text").inner_text() == XSS_REPLY
    assert page.evaluate("window.__xss") is None
    assert page.locator(".messages img, .messages script").count() == 0

    page.reload()  # and again when the history is restored
    wait_count(page, ".messages .message", 2)
    assert page.locator(REPLY).last.locator(".text").inner_text() == XSS_REPLY
    assert page.evaluate("window.__xss") is None


def test_keyboard_only(open_page):
    page = open_page()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "message":
            break
    else:
        pytest.fail("Tab never reached the message box")
    page.keyboard.type("First line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#message") == "First line\nsecond line"
    assert page.locator(".messages .message").count() == 0
    page.keyboard.press("Enter")
    last_reply(page)
    assert page.locator(".messages .from-user .text").inner_text() == "First line\nsecond line"
    assert page.input_value("#message") == ""
    assert page.evaluate("document.activeElement.id") == "message"


def test_a_broken_profile_still_leaves_a_working_page(open_page, browser, server):
    page = open_page()
    page.route(
        "**/profile",
        lambda route: route.fulfill(
            status=500,
            content_type="application/problem+json",
            body='{"type":"urn:twin-server:problem:persona-error","title":"Persona unavailable","status":500,'
            '"detail":"The persona failed; the server log has the details.","request_id":"abc123"}',
        ),
    )
    page.reload()
    page.wait_for_selector("#notice")
    assert page.locator("#notice").inner_text().startswith("The twin's profile could not be loaded.")
    assert page.locator("#twin-intro").inner_text() == "Profile unavailable right now"
    assert "urn:" not in page.locator("body").inner_text()
    send(page, "Hello!")
    assert last_reply(page).inner_text()


def test_embedded_on_another_site(open_page, server, personal_site):
    page = open_page()
    page.goto(personal_site)
    page.get_by_role("button", name="Chat with my digital twin").click()
    launcher = page.locator("button[aria-controls^='twin-server-chat']")
    assert launcher.get_attribute("aria-expanded") == "true"
    assert launcher.get_attribute("aria-label") == "Close chat"
    frame = page.frame_locator("iframe[title='Chat with my digital twin']")
    page.locator("iframe[title='Chat with my digital twin']").wait_for()
    frame.locator("#twin-name:text('Ada Quill')").wait_for(timeout=20_000)
    frame.locator("#message").fill("Hello!")
    frame.locator("#message").press("Enter")
    frame.locator(DONE_REPLY).wait_for()
    screenshot(page, "embed-desktop.png")

    # The API itself, called from the other origin: allowed by TWIN_CORS_ORIGINS.
    profile = page.evaluate(f"fetch('{server}/profile').then(r => r.json())")
    assert profile["name"] == "Ada Quill"
