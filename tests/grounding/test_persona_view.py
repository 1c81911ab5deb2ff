"""The grounder's per-persona view: made once per persona revision, a few kept, and the request's
token count taken from the sizes of its parts equals the estimate of what is sent."""

from __future__ import annotations

import gc
import weakref
from datetime import datetime, timedelta, timezone

import pytest

from twin_server.grounding.context import Grounder, GroundingSettings
from twin_server.grounding.tokens import MESSAGE_OVERHEAD, estimate_tokens
from twin_server.types import Message, Persona, Summary

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def revision(n: int, words: str = "sonar buoy harbour tide") -> Persona:
    return Persona("Ada Quill", facts={"full_name": "Ada Quill", "location": "Lisbon"},
                   summary=f"I build boats (revision {n}).", notes={"log": f"## Field notes\n{words} revision-{n}"})


def test_a_view_is_made_once_and_serves_the_persona_and_its_public_part():
    grounder = Grounder()
    raw = Persona("Ada Quill", facts={"full_name": "Ada Quill", "salary": "a lot", "private": ["salary"]},
                  notes={"diary": "---\nprivate: true\n---\nDear diary", "log": "## Field notes\nsonar"})
    view = grounder.view(raw)
    public = grounder.public(raw)
    assert public is not raw and "salary" not in public.facts
    assert grounder.view(public) is view and grounder.view(raw) is view
    assert grounder.build(public, "Where are you based?").passages is view.passages


def test_the_public_part_is_served_its_personas_view_after_another_persona_was_looked_up():
    grounder = Grounder()
    raw = Persona("Ada Quill", facts={"full_name": "Ada Quill", "salary": "a lot", "private": ["salary"]},
                  notes={"log": "## Field notes\nsonar"})
    view = grounder.view(raw)
    public = grounder.public(raw)
    grounder.view(revision(1))
    assert grounder.view(public) is view


def test_a_new_persona_revision_gets_its_own_view_and_the_old_one_keeps_its_own():
    grounder = Grounder()
    old, new = revision(1), revision(2)
    old_view = grounder.view(old)
    new_view = grounder.view(new)
    assert new_view is not old_view
    assert "revision-2" in grounder.build(new, "What are your field notes?").system
    assert grounder.view(old) is old_view  # asked right after the new one: not served the last one looked up
    assert "revision-1" in grounder.build(old, "What are your field notes?").system
    assert grounder.view(new) is new_view


def test_the_views_kept_are_bounded():
    grounder = Grounder()
    made = []
    for n in range(12):
        persona = revision(n)
        made.append(weakref.ref(grounder.view(persona)))
        grounder.build(persona, "hello")
    del persona
    gc.collect()
    alive = [ref for ref in made if ref() is not None]
    assert 1 <= len(alive) <= 4 and made[-1]() is not None


SCRIPTS = ["boats and sonar", "Café — naïve “quotes” › here", "日本語のテキストです", "emoji 🚤🌊 and text",
           "lone \udc80 surrogate"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_request_tokens_are_the_estimate_of_what_is_sent_in_any_script(script):
    persona = Persona("Ada Quill", facts={"full_name": "Ada Quill", "location": f"Lisbon {script}"},
                      summary=f"I build boats. {script}",
                      notes={f"n{k}": f"## Part {k} {script}\n" + f"sonar {script} harbour {k} " * (4 + 3 * k)
                             for k in range(12)})
    history = [Message("user" if i % 2 == 0 else "assistant", f"{script} " * (i + 1), T0 + timedelta(seconds=i))
               for i in range(9)]
    seen = set()
    for budget in (700, 900, 1200, 1800, 2500, 12000):
        grounder = Grounder(GroundingSettings(context_tokens=budget))
        for length in range(1, 8):
            message = f"sonar harbour? {script}" + "." * length
            summary = Summary(f"they asked {script} " * length ** 3, T0)
            instructions = f"be brief {script} " * (length % 3) * length ** 2
            context = grounder.build(persona, message, history, instructions=instructions, summary=summary)
            sent = [context.system, *(m.content for m in context.history), message]
            assert context.tokens == sum(estimate_tokens(text) + MESSAGE_OVERHEAD for text in sent)
            seen.add((context.plan.whole, context.plan.knowledge > 0, context.plan.summary,
                      context.plan.instructions))
    # The prompts met: the whole knowledge, some passages, none; with and without the summary and instructions.
    assert {s[:2] for s in seen} == {(True, True), (False, True), (False, False)}
    assert {s[2] for s in seen} == {s[3] for s in seen} == {True, False}


def test_the_stable_prefix_is_the_core_and_the_whole_knowledge_when_sent_and_the_same_on_every_turn():
    persona = revision(1)
    grounder = Grounder()
    view = grounder.view(persona)
    turns = [grounder.build(persona, "What are your field notes?"),
             grounder.build(persona, "And the tide?", summary=Summary("they asked about notes", T0)),
             grounder.build(persona, "hello", instructions="Be brief.")]
    assert all(context.plan.whole for context in turns)
    assert {context.system[:context.stable_prefix] for context in turns} == {view.core + view.whole}
    assert view.whole.endswith("revision-1")
    cut = Grounder(GroundingSettings(context_tokens=510)).build(persona, "What are your field notes?")
    assert not cut.plan.whole and cut.system[:cut.stable_prefix] == view.core
