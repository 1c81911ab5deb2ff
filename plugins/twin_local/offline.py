"""The offline language model: answers in the person's voice from their persona alone.

No network, no model weights, no randomness. The persona is cut into
first-person passages once (``twin_local.passages``) and indexed
(``twin_local.index``). Each new user message is first read for what it is
doing (``twin_local.dialogue``): small talk, "are you a bot?", an attempt to
change who the twin is, a task it is not here for (arithmetic, a poem). A
question is matched with BM25, a small intent, synonym and paraphrase map,
and the kind of answer it wants (a number, a year, a price); a short
follow-up ("where is that?", "and before that?") borrows the previous
turn's subject. The reply is the best one to three passages, but only when
one of them covers the question; otherwise it says honestly that the
persona doesn't cover it. ``prompt.system`` is never read, so no system
message can change who it is or what it says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from twin_local import dialogue
from twin_local.analysis import normalise, query_groups, query_terms
from twin_local.index import PersonaIndex
from twin_local.passages import Passage, follow_on, lower_first
from twin_server.errors import ConfigurationError
from twin_local.replies import offline_reply
from twin_server import Message, Persona, Prompt, Reply, Settings

__all__ = ["OfflineLLM", "PersonaIndex", "NOT_COVERED", "is_not_covered"]

NOT_COVERED = (
    "I haven't written anything about that, so I'd rather not guess. "
    "Ask me about my work, projects or background."
)
NOTHING_MORE = "That's everything I've written about that. Ask me about my work, projects or background."
OFF_TOPIC = (
    "That's outside what I can help with here: I'm only here to talk about my work, projects and background. "
    "Ask me anything about those!"
)
THANKS = "You're welcome! Is there anything else you'd like to know about my work, projects or background?"
GOODBYE = "Thanks for stopping by, and good luck with whatever you're working on!"
NICE_TO_MEET = "Nice to meet you too! What would you like to know about my work, projects or background?"
#: A capitalised word that does not start a sentence. It begins with the capital and looks behind from there
#: (same matches as ``(?<![.!?:]\s)(?<!^)\b[A-Z][A-Za-z0-9]+``) so the regex engine skips lower-case text fast.
_ENTITY = re.compile(r"[A-Z](?<=(?<![.!?:]\s)(?<!^)\b[A-Z])[A-Za-z0-9]+")


def is_not_covered(reply: str) -> bool:
    """The reply is the honest "not covered" answer: the question is one the owner may want to add."""
    return NOT_COVERED in reply


class OfflineLLM:
    """A deterministic, network-free stand-in for a language model that answers from the persona."""

    #: A passage must score at least this to be worth saying.
    THRESHOLD = 1.5
    #: ...and cover this much of the question (by idf weight), unless an intent says what it is about;
    #: half of it for a follow-up, whose subject the previous turn gave.
    MIN_COVERAGE = 0.5
    #: How many of the best-ranked passages are considered at all.
    CANDIDATES = 8
    #: Passages after the best are added while they score at least this fraction of it.
    RELATIVE = 0.55
    #: Stop adding passages once the reply is this long.
    MAX_CHARS = 1200
    #: How much of the previous turns' subject a follow-up borrows, most recent first.
    CARRY = (0.7, 0.45, 0.3)

    def __init__(self, max_passages: int = 3) -> None:
        if not 1 <= max_passages <= 5:
            raise ValueError("max_passages must be from 1 to 5")
        self.max_passages = max_passages
        self._index: PersonaIndex | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "OfflineLLM":
        return cls(max_passages=Settings(config).get_int("OFFLINE_MAX_PASSAGES", 3, minimum=1, maximum=5))

    def complete(self, prompt: Prompt) -> Reply:
        """The reply; ``covered`` is False for the honest "not covered" answer (an unanswered question)."""
        text = self.reply(prompt.persona, prompt.messages)
        prompt.cite(self.sources(prompt.persona, text))
        return offline_reply(text, prompt.options, covered=not is_not_covered(text))

    def sources(self, persona: Persona, reply: str) -> list[str]:
        """The ids of the persona passages (``twin_server.persona_passages``) this reply said, in its order."""
        index = self.index(persona)
        ids = index.source_ids()
        return [ids[p.order] for p in index.said_in(reply) if ids[p.order] is not None]

    def stream(self, prompt: Prompt) -> Iterator[str]:
        reply = self.complete(prompt)
        # Word-sized pieces, each with the whitespace after it, so they join back to exactly the reply;
        # the last one is a Reply, to say whether it was covered or cut.
        pieces = re.findall(r"\s*\S+\s*", reply) or [str(reply)]
        yield from pieces[:-1]
        yield Reply(pieces[-1], finish_reason=reply.finish_reason, covered=reply.covered)

    def index(self, persona: Persona) -> PersonaIndex:
        index = self._index
        if index is None or index.persona is not persona:
            index = self._index = PersonaIndex(persona)
        return index

    # --- reading the message ------------------------------------------------

    def reply(self, persona: Persona, messages: Sequence[Message]) -> str:
        index = self.index(persona)
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        if not last.strip():
            return self._greeting(persona)
        text = normalise(last)
        first = index.first_name
        if dialogue.is_injection(text):
            return (f"I only ever answer as myself, {persona.full_name}, from what I've written, so I won't take on "
                    "another role or share how I'm set up. Ask me about my work, projects or background.")
        greeting = dialogue.GREETING.match(text)
        rest = text[greeting.end():] if greeting else text
        rest = index.name_opening.sub("", rest)
        rest = dialogue.strip_interjections(rest.strip(" !.,:;-"))
        small = self._small_talk(persona, rest, bool(greeting))
        if small is not None:
            return small
        if dialogue.asks_if_ai(rest, index.name_question):
            return (
                f"I'm a digital twin of {persona.full_name}: an automated stand-in that answers only from what "
                f"{first.capitalize()} has written, so I won't guess beyond that. "
                "Ask me about my work, projects or background."
            )
        if dialogue.is_task(rest):
            return OFF_TOPIC
        answer = self._answer(index, rest, messages)
        return f"Hi! {answer}" if greeting else answer

    def _small_talk(self, persona: Persona, rest: str, greeted: bool) -> str | None:
        if greeted and (not rest or dialogue.HOW_ARE_YOU.match(rest)):
            return self._greeting(persona, how_are_you=bool(rest))
        if dialogue.HOW_ARE_YOU.match(rest):
            return self._greeting(persona, how_are_you=True)
        short = len(rest.split()) <= 6
        if dialogue.NICE_TO_MEET.match(rest) and short:
            return NICE_TO_MEET
        if dialogue.THANKS.match(rest) and short:
            return THANKS
        if dialogue.GOODBYE.match(rest) and short:
            return GOODBYE
        return None

    def _answer(self, index: PersonaIndex, text: str, messages: Sequence[Message]) -> str:
        said: set[str] = set()
        if dialogue.MORE.match(text) and len(query_terms(text)) <= 1:
            # "Tell me more": answer the last real question again, leaving out what was already said.
            users = [m for m in messages if m.role == "user"]
            earlier = next((t for t in map(normalise, (m.content for m in reversed(users[:-1])))
                            if not dialogue.MORE.match(t) and query_terms(t)), None)
            if earlier is not None:
                said = index.said_any(m.content for m in messages if m.role == "assistant")
                return self._compose(index, earlier, (), said) or NOTHING_MORE
        for pattern, keys in dialogue.PRIVATE:
            if pattern.search(text) and not any(k in index.persona.facts for k in keys):
                return NOT_COVERED
        strong = query_groups(text, weak=False).keys() - index.name_terms
        earlier = list(messages[:-1]) if dialogue.looks_like_follow_up(text, len(strong)) else []
        answer = self._compose(index, text, earlier, said)
        if answer is not None:
            return answer
        if (strong and not earlier and not dialogue.leans_on_context(text)
                and not dialogue.is_personal(text, index.name_terms | index.names)):
            return OFF_TOPIC  # general knowledge ("what's the capital of France?"): not a gap in the persona
        return NOT_COVERED

    # --- composing the reply ------------------------------------------------

    def _compose(self, index: PersonaIndex, text: str, earlier: Sequence[Message], said: set[str]) -> str | None:
        boosts = _boosts(text, 1.0)
        terms = {t: w for t, w in query_terms(text, expand=True).items() if t not in index.name_terms}
        groups = {t: s for t, s in query_groups(text, weak=False).items() if t not in index.name_terms}
        kinds = dialogue.answer_kinds_wanted(text)
        subject = self._subject(index, earlier, boosts, terms) if earlier else False
        step = dialogue.relation(text)
        if step:
            after = self._relative(index, text, step, earlier)
            if after is not None:
                return after.text
        if not subject and not boosts and not index.mentions(groups):
            return None
        if subject and kinds:
            # A follow-up asking for something specific: what the last reply said without it is no answer.
            last = next((m.content for m in reversed(earlier) if m.role == "assistant"), "")
            said = said | {p.text for p in index.passages if p.text in last and not kinds & p.kinds}
        # A follow-up's subject is borrowed at a lower weight, and it needs less of its own words covered.
        threshold = self.THRESHOLD * (self.CARRY[0] if subject else 1.0)
        least = self.MIN_COVERAGE * (0.5 if subject else 1.0)
        # Without a previous turn, "how much does it cost?" has no subject: only its own words count, not synonyms.
        literal = not subject and dialogue.leans_on_context(text) and not index.names & groups.keys()
        ranked = [(s, p) for s, p in index.rank(terms, boosts, kinds, self.CANDIDATES)
                  if p.text not in said and s >= threshold]
        # Only passages that answer the question: one an intent points at, or one covering enough of its words.
        ranked = [(s, p) for s, p in ranked
                  if index.boost(p, boosts) or not groups or index.coverage(p, groups, literal) >= least]
        if not ranked:
            return None
        best_score, best = ranked[0]
        limit = min(self.max_passages, 2) if kinds or subject else self.max_passages
        chosen = [best]
        length = len(best.text)
        for score, passage in ranked[1:]:
            if len(chosen) >= limit or score < max(threshold, best_score * self.RELATIVE):
                break
            if length + len(passage.text) > self.MAX_CHARS:
                continue
            chosen.append(passage)
            length += len(passage.text)
        ordered = sorted(chosen, key=lambda p: p.order)
        out = ordered[0].text
        for before, after in zip(ordered, ordered[1:]):
            out += ("\n\n" if before.paragraph or after.paragraph else " ") + follow_on(before.text, after.text)
        return out

    def _subject(self, index: PersonaIndex, earlier: Sequence[Message], boosts: dict[str, float],
                 terms: dict[str, float]) -> bool:
        """Add the previous turns' subject to a follow-up's terms and boosts; False when there is none."""
        users = [m.content for m in earlier if m.role == "user"][:-len(self.CARRY) - 1:-1]
        if not users:
            return False
        name_terms = index.name_terms
        for share, previous in zip(self.CARRY, map(normalise, users)):
            for term, weight in query_terms(previous, expand=True).items():
                if term not in name_terms:
                    carried = weight * share
                    if carried > terms.get(term, 0.0):
                        terms[term] = carried
            scaled = share * 0.7
            for tag, boost in dialogue.intent_boosts(previous).items():
                carried = boost * scaled
                if carried > boosts.get(tag, 0.0):
                    boosts[tag] = carried
            if not dialogue.looks_like_follow_up(previous, len(query_groups(previous, weak=False).keys() - name_terms)):
                break
        last_reply = next((m.content for m in reversed(earlier) if m.role == "assistant"), None)
        if last_reply is not None:
            # The names in the last reply are what "it", "there" and "that" most likely point at.
            for term in query_terms(" ".join(_ENTITY.findall(last_reply))):
                if term not in name_terms and terms.get(term, 0.0) < 0.4:
                    terms[term] = 0.4
        return True

    def _relative(self, index: PersonaIndex, text: str, step: int, earlier: Sequence[Message]) -> Passage | None:
        """The dated fact before or after the one the question names, or the one the last reply gave."""
        own = {t: w for t, w in query_terms(text).items() if w >= 1 and t not in index.name_terms}
        reference = None
        if own:
            scored = [(sum(1 for t in own if t in p.terms), -p.order, p) for p in index.dated]
            best = max(scored, key=lambda s: s[:2], default=None)
            reference = best[2] if best and best[0] > 0 else None
        if reference is None:
            replies = [m.content for m in earlier if m.role == "assistant"]
            said = index.dated_in(replies[-1:])
            reference = (said[0] if step < 0 else said[-1]) if said else None
        users = [m.content for m in earlier if m.role == "user"]
        if reference is None and users:
            return self._relative(index, users[-1], step, ())  # the dated fact the last question was about
        return index.neighbour(reference, step) if reference is not None else None

    def _greeting(self, persona: Persona, how_are_you: bool = False) -> str:
        opener = "Hi! I'm doing well, thanks for asking." if how_are_you else "Hi!"
        intro = persona.intro.strip().rstrip(".")
        who = f"I'm {persona.full_name}"
        if intro:
            who += f" — {lower_first(intro)}"
        return f"{opener} {who}. What would you like to know about my work, projects or background?"


def _boosts(text: str, share: float) -> dict[str, float]:
    # A share is positive, and scaling by one keeps which boost is largest: the same as scaling each.
    return {tag: boost * share for tag, boost in dialogue.intent_boosts(text).items()}

