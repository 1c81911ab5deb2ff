"""The budget arithmetic: never over budget, the newest message last, the cuts in the stated order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from twin_server.errors import HistoryTooLong, PersonaError
from twin_server.grounding.budget import Overflow, plan
from twin_server.grounding.context import Grounder, GroundingSettings
from twin_server.grounding.tokens import MESSAGE_OVERHEAD, TokenCounter, estimate_tokens
from twin_server.types import Message, Persona, Summary

costs = st.lists(st.integers(min_value=1, max_value=60), max_size=12)


@st.composite
def requests(draw):
    knowledge = draw(costs)
    return dict(
        budget=draw(st.integers(min_value=0, max_value=600)),
        fixed=draw(st.integers(min_value=0, max_value=120)),
        message=draw(st.integers(min_value=1, max_value=80)),
        knowledge=knowledge,
        whole=draw(st.none() | st.integers(min_value=max(1, sum(knowledge) // 2), max_value=sum(knowledge) + 40))
        if knowledge else None,
        header=draw(st.integers(min_value=0, max_value=10)),
        instructions=draw(st.integers(min_value=0, max_value=90)),
        summary=draw(st.integers(min_value=0, max_value=90)),
        history=draw(costs),
        share=draw(st.sampled_from([0.0, 0.25, 0.5, 0.8, 1.0])),
    )


def knowledge_cost(asked, chosen):
    if chosen.whole:
        return asked["whole"]
    kept = asked["knowledge"][: chosen.knowledge]
    return sum(kept) + (asked["header"] if kept else 0)


@settings(max_examples=300, deadline=None)
@given(requests())
def test_a_plan_never_exceeds_its_budget_and_cuts_in_order(asked):
    budget, fixed, message = asked["budget"], asked["fixed"], asked["message"]
    if fixed + message > budget:
        with pytest.raises(Overflow):
            plan(**asked)
        return
    chosen = plan(**asked)
    history = asked["history"]
    spent = (fixed + message + knowledge_cost(asked, chosen) + sum(history[chosen.history_start:])
             + (asked["summary"] if chosen.summary else 0) + (asked["instructions"] if chosen.instructions else 0))
    assert spent == chosen.tokens <= budget
    left = budget - spent
    room = budget - fixed - message
    share_room = int(room * asked["share"])
    knowledge = asked["knowledge"]

    # What fits in the knowledge's share is kept whatever the conversation holds.
    within_share, total = 0, 0
    for n, cost in enumerate(knowledge):
        total += cost + (asked["header"] if n == 0 else 0)
        if total > share_room:
            break
        within_share = n + 1
    whole_in_share = asked["whole"] is not None and knowledge and asked["whole"] <= share_room
    assert chosen.whole or chosen.knowledge >= within_share
    if whole_in_share:
        assert chosen.whole

    # Cut order: the oldest history goes first, then the summary, then the instructions: each goes
    # only when it does not fit beside the parts before it, whatever comes after it.
    first_knowledge = asked["whole"] if whole_in_share else (
        sum(knowledge[:within_share]) + (asked["header"] if within_share else 0))
    after_knowledge = room - first_knowledge
    if asked["instructions"] and not chosen.instructions:
        assert asked["instructions"] > after_knowledge
    after_instructions = after_knowledge - (asked["instructions"] if chosen.instructions else 0)
    if asked["summary"] and not chosen.summary:
        assert asked["summary"] > after_instructions
    after_summary = after_instructions - (asked["summary"] if chosen.summary else 0)
    # History is a contiguous run of the newest messages; the one before it did not fit, and the
    # knowledge beyond its share never took its place.
    kept_history = history[chosen.history_start:]
    after_history = after_summary - sum(kept_history)
    if chosen.history_start > 0:
        assert history[chosen.history_start - 1] > after_history
    # More knowledge only from what is left, and nothing left out would still have fitted.
    if not chosen.whole and chosen.knowledge < len(knowledge):
        assert knowledge[chosen.knowledge] + (asked["header"] if chosen.knowledge == 0 else 0) > left
        assert asked["whole"] is None or asked["whole"] > first_knowledge + after_history


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5))
def test_the_estimate_of_a_whole_is_at_most_the_sum_of_its_parts(parts):
    assert estimate_tokens("".join(parts)) <= sum(estimate_tokens(p) for p in parts)


def test_the_estimate_is_conservative_for_prose_and_other_scripts():
    prose = "I build small autonomous boats that map coastlines, and I test them outside. " * 10
    assert estimate_tokens(prose) >= len(prose) / 4  # English BPE averages about 4 characters a token
    assert estimate_tokens("日本語のテキスト") >= 8
    assert estimate_tokens("") == 0


T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
WORDS = "boat sonar coast tide harbour rust python sensor kalman buoy lisbon ferry dock mooring survey".split()


def persona_of(notes: int, size: int = 400) -> Persona:
    body = {f"note{n:03d}": "\n\n".join(
        f"## Topic {n}-{k}\n" + " ".join(WORDS[(n * 7 + k * 3 + i) % len(WORDS)] for i in range(size // 6))
        for k in range(2)) for n in range(notes)}
    return Persona("Ada Quill", facts={"full_name": "Ada Quill", "location": "Lisbon", "skills": ["Rust"]},
                   summary="I build boats.", style="Short sentences.", notes=body)


def history_of(lengths):
    return [Message("user" if i % 2 == 0 else "assistant", "word " * n, T0 + timedelta(seconds=i))
            for i, n in enumerate(lengths)]


@settings(max_examples=60, deadline=None)
@given(
    notes=st.integers(min_value=0, max_value=40),
    lengths=st.lists(st.integers(min_value=1, max_value=300), max_size=20),
    message=st.integers(min_value=1, max_value=300),
    budget=st.integers(min_value=300, max_value=6000),
    instructions=st.integers(min_value=0, max_value=500),
    summary=st.integers(min_value=0, max_value=200),
)
def test_a_built_request_never_exceeds_the_budget_and_ends_with_the_new_message(
        notes, lengths, message, budget, instructions, summary):
    grounder = Grounder(GroundingSettings(context_tokens=budget))
    persona = persona_of(notes)
    text = "sonar " * message
    history = history_of(lengths)
    kept_summary = Summary("they asked " * summary, T0) if summary else None
    try:
        context = grounder.build(persona, text, history, instructions="be brief " * instructions,
                                 summary=kept_summary)
    except (HistoryTooLong, PersonaError):
        core = grounder.view(persona).core_tokens
        assert core + estimate_tokens(text) + MESSAGE_OVERHEAD > budget
        return
    request = [context.system, *(m.content for m in context.history), text]
    assert sum(estimate_tokens(part) + MESSAGE_OVERHEAD for part in request) == context.tokens <= budget
    assert list(context.history) == history[len(history) - len(context.history):]  # the newest, in order
    assert context.system.startswith(grounder.view(persona).core)  # the stable prefix is never cut


def test_a_message_alone_over_the_budget_is_a_400_saying_so():
    grounder = Grounder(GroundingSettings(context_tokens=600))
    with pytest.raises(HistoryTooLong, match=r"too long for this twin: about \d+ tokens, and at most \d+ fit"):
        grounder.build(persona_of(0), "x " * 2000)
    with pytest.raises(HistoryTooLong):
        grounder.check(persona_of(0), "x " * 2000)
    grounder.check(persona_of(0), "a short one")


def test_a_core_larger_than_the_budget_is_the_operators_problem():
    big = Persona("Bo", facts={"full_name": "Bo", "skills": [f"skill number {n}" for n in range(400)]})
    with pytest.raises(PersonaError, match="TWIN_CONTEXT_TOKENS=300"):
        Grounder(GroundingSettings(context_tokens=300)).build(big, "hi")


class Tokenizer:
    """A backend tokenizer: one token per word, and it is asked."""

    def __init__(self):
        self.calls = 0

    def __call__(self, text):
        self.calls += 1
        return len(text.split())


BUDGET = 1200


def test_the_backends_count_tokens_is_used_when_it_has_one():
    tokenizer = Tokenizer()
    counter = TokenCounter(tokenizer)
    grounder = Grounder(GroundingSettings(context_tokens=BUDGET), counter)
    history = history_of([30] * 10)
    context = grounder.build(persona_of(3, size=60), "sonar buoy", history)
    assert tokenizer.calls > 0 and counter.exact
    words = sum(len(p.split()) + MESSAGE_OVERHEAD for p in [context.system, *(m.content for m in context.history)])
    assert words + len("sonar buoy".split()) + MESSAGE_OVERHEAD == context.tokens <= BUDGET
    estimated = Grounder(GroundingSettings(context_tokens=BUDGET)).build(persona_of(3, size=60), "sonar buoy", history)
    assert 0 < len(estimated.history) < len(context.history)  # words are fewer than estimated tokens


def test_a_failing_count_tokens_falls_back_to_the_estimate():
    def broken(text):
        raise RuntimeError("no tokenizer today")

    counter = TokenCounter(broken)
    assert counter.count("hello there") == estimate_tokens("hello there") and not counter.exact


def test_a_count_tokens_failing_on_the_system_prompt_has_the_summary_weighed_again_by_the_estimate():
    # Every part is short enough for the tokenizer but the system prompt joining them is not: its count fails,
    # the estimate is over budget, and the next round must weigh the summary as the estimate does (too big to
    # keep), not as the tokenizer did (a few words), or it cuts knowledge to make room for it.
    def words_until_long(text):
        if len(text) > 2500:
            raise RuntimeError("the tokenizer takes short texts only")
        return len(text.split())

    persona = Persona("Ada Quill", facts={"full_name": "Ada Quill", "location": "Lisbon"}, summary="I build boats.",
                      notes={"log": "## Field notes\n" + "sonar buoy " * 60})
    grounder = Grounder(GroundingSettings(context_tokens=1500), TokenCounter(words_until_long))
    context = grounder.build(persona, "Tell me about sonar", (), summary=Summary("日本語 " * 150, T0))
    assert not grounder.counter.exact
    assert context.plan.whole and not context.plan.summary
    assert context.tokens <= 1500
