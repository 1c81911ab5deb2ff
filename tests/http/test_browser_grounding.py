"""The chat page's sources, its scrolling and a reload mid-reply, in Chromium (issue 13).

Reuses the gunicorn server and Chromium of ``test_browser`` (one of each for this module).
"""

from __future__ import annotations

from tests.http.test_browser import (  # noqa: F401 (fixtures)
    DESKTOP,
    DONE_REPLY,
    PHONE,
    REPLY,
    SESSION_KEY,
    browser,
    open_page,
    personal_site,
    screenshot,
    send,
    server,
    stored,
    wait_count,
)

IN_VIEW = """() => {
    const box = document.getElementById('conversation').getBoundingClientRect();
    const last = [...document.querySelectorAll('.messages .from-twin')].pop().getBoundingClientRect();
    return Math.round(last.bottom - box.bottom);
}"""


def test_sources_are_footnotes_built_from_nodes_and_come_back_after_a_reload(open_page, server):
    page = open_page()
    send(page, "Where are you based?")
    page.wait_for_selector(f"{DONE_REPLY} .sources li")
    reply = page.locator(REPLY).last
    assert "Lisbon" in reply.locator(".text").inner_text()
    assert reply.locator(".sources li").all_inner_texts() == ["Location"]
    assert reply.locator(".sources li").first.get_attribute("title") == "facts.json#location"
    assert reply.locator(".sources-label").inner_text() == "Based on"
    send(page, "What is your favourite pizza topping?")
    wait_count(page, DONE_REPLY, 2)
    assert page.locator(REPLY).last.locator(".sources").count() == 0  # not covered: no sources
    screenshot(page, "page-sources.png")

    session_id = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")
    assert stored(server, session_id)[1]["sources"] == [{"id": "facts.json#location", "title": "Location"}]
    page.reload()
    wait_count(page, ".messages .message", 4)
    assert page.locator(REPLY).first.locator(".sources li").all_inner_texts() == ["Location"]


def _fill(page, count: int) -> None:
    for n in range(count):
        send(page, "[fast] Tell me your story")
        wait_count(page, DONE_REPLY, n + 1)


def test_a_finished_reply_is_scrolled_into_view(open_page):
    for viewport in (DESKTOP, PHONE):
        page = open_page(viewport=viewport)
        _fill(page, 3)
        # Each reply arrived whole, before a paint: only finish() could have scrolled to it.
        assert page.evaluate(IN_VIEW) <= 1, f"the newest reply ends below the fold at {viewport}"
        assert page.evaluate("(() => { const c = document.getElementById('conversation');"
                             " return c.scrollHeight > c.clientHeight; })()"), "nothing to scroll: no test"
        screenshot(page, f"page-scrolled-{viewport['width']}.png")


def test_a_visitor_reading_further_up_is_left_there(open_page):
    page = open_page()
    _fill(page, 3)
    page.evaluate("document.getElementById('conversation').scrollTop = 0")
    send(page, "[slow] What do you work on?")
    page.wait_for_selector(f"{REPLY}.streaming")
    page.evaluate("document.getElementById('conversation').scrollTop = 0")
    page.wait_for_timeout(300)
    assert page.evaluate("document.getElementById('conversation').scrollTop") == 0


def test_a_reload_during_a_streamed_reply_shows_the_turn(open_page, server):
    page = open_page()
    send(page, "[slow] What do you work on?")
    page.wait_for_function(
        "() => { const r = document.querySelector('.messages .from-twin.streaming .text');"
        " return r && r.textContent.trim().split(/\\s+/).length >= 3; }"
    )
    session_id = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")
    under_way = stored(server, session_id)  # not stored yet: GET /conversation shows it as under way
    assert [m["role"] for m in under_way] == ["user", "assistant"] and under_way[1]["in_progress"] is True
    page.reload()
    wait_count(page, ".messages .message", 2)
    texts = page.locator(".messages .message .text").all_inner_texts()
    assert texts[0] == "[slow] What do you work on?"
    assert texts[1].split()[:3] == ["I", "work", "as"]
    assert "Reply interrupted" in page.locator(REPLY).last.inner_text()
    screenshot(page, "page-reloaded-mid-reply.png")
