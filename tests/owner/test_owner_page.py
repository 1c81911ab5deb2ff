"""The owner's inbox page in a real browser: Playwright driving Debian's Chromium against gunicorn.

The offline twin under gunicorn records a lead (with markup in it) and an
unanswered question from real chats; the page, opened with the owner key,
shows them as text, lists the conversations and deletes a lead. A request
beyond 127.0.0.1, a script error or a CSP violation fails the test.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.doubles.servers import ROOT, gunicorn

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "owner-page-key-0123456789"
HOSTILE = "I'm Mallory <img src=x onerror=window.__owned=1> — mallory@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"TWIN_DATA_DIR": str(tmp_path_factory.mktemp("owner-page")), "TWIN_OWNER_KEYS": KEY,
           "TWIN_RATE_LIMIT": "off", "TWIN_OWNER_RATE_LIMIT": "1000/minute"}
    with gunicorn(env, workers=1, threads=4) as url:
        for message, session in ((HOSTILE, "page-visitor-1"), ("What do you think about cryptocurrency?",
                                                                "page-visitor-2")):
            assert requests.post(f"{url}/chat", json={"message": message, "session_id": session},
                                 timeout=10).status_code == 200
        owner = {"Authorization": f"Bearer {KEY}"}
        for _ in range(100):  # detected events are stored just after the reply
            if requests.get(f"{url}/owner/leads", headers=owner, timeout=10).json()["leads"]:
                break
            time.sleep(0.05)
        yield url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (`make test` installs it)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    outside, errors = [], []

    def route(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.fallback()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and "Refused to" in message.text else None)
    page.goto(server + "/owner")
    yield page
    context.close()
    assert outside == [] and errors == []


def open_inbox(page, key=KEY):
    page.fill("#owner-key", key)
    page.press("#owner-key", "Enter")


def test_the_inbox_shows_leads_questions_and_conversations_as_text(page, server):
    response = requests.get(server + "/owner", timeout=10)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    open_inbox(page)
    page.wait_for_selector("#leads li")
    lead = page.locator("#leads li").first
    assert "mallory@example.com" in lead.inner_text()
    assert "<img src=x onerror=window.__owned=1>" in lead.locator(".text").inner_text()  # shown, never run
    assert page.evaluate("window.__owned") is None and page.locator("#leads img").count() == 0
    assert "What do you think about cryptocurrency?" in page.locator("#questions li").first.inner_text()
    assert page.locator("#conversations li").count() == 2
    assert page.evaluate("sessionStorage.getItem('twin-server:owner-key')") == KEY
    assert page.locator("#key-form").is_hidden()


def test_a_wrong_key_is_refused_and_the_form_stays(page):
    open_inbox(page, "not-the-key")
    page.wait_for_selector("#status.error")
    assert "not valid" in page.locator("#status").inner_text()
    assert page.locator("#inbox").is_hidden() and page.locator("#key-form").is_visible()


def test_a_lead_is_deleted_from_the_page(page, server):
    open_inbox(page)
    page.wait_for_selector("#leads li")
    page.get_by_role("button", name="Delete the lead mallory@example.com").click()
    from playwright.sync_api import expect

    expect(page.locator("#leads li")).to_have_count(0)
    expect(page.locator("#status")).to_have_text("Lead deleted.")
    assert page.locator("#no-leads").is_visible()
    owner = {"Authorization": f"Bearer {KEY}"}
    assert requests.get(server + "/owner/leads", headers=owner, timeout=10).json()["leads"] == []
    (ROOT / "artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "artifacts" / "owner-inbox.png"))
