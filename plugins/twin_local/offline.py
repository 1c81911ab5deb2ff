"""The offline language model: answers in the person's voice from their persona alone.

No network, no model weights, no randomness. The persona is cut into
first-person passages once (see ``twin_local.passages``); each new user
message is matched against them with BM25 plus a small intent map ("where do
you live" → location, "what do you do" → role, ...), and the reply is the best
one to three passages. When nothing matches well enough it says so honestly
instead of guessing. ``prompt.system`` is never read, so no system message can
change who it is or what it says.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from twin_local.passages import Passage, build_passages, follow_on, lower_first, query_groups, query_terms
from twin_local.replies import offline_reply
from twin_server.errors import ConfigurationError
from twin_server import Message, Persona, Prompt, Reply, Settings

NOT_COVERED = (
    "I haven't written anything about that, so I'd rather not guess. "
    "Ask me about my work, projects or background."
)
NOTHING_MORE = "That's everything I've written about that. Ask me about my work, projects or background."
THANKS = "You're welcome! Is there anything else you'd like to know about my work, projects or background?"
GOODBYE = "Thanks for stopping by, and good luck with whatever you're working on!"

#: Intent patterns (on the lower-cased message) and how much they boost passages by tag.
_INTENTS: tuple[tuple[re.Pattern[str], Mapping[str, float]], ...] = tuple(
    (re.compile(pattern), boosts)
    for pattern, boosts in (
        (r"\bwho (are|r) (you|u)\b|\bintroduce yourself\b|\bwho is this\b|\bwho am i (talking|speaking|chatting)\b",
         {"name": 6.0, "role": 4.0}),
        (r"\byour (full |real )?name\b|\bcall you\b|\bwhat are you called\b", {"name": 6.0}),
        (r"\bwhere\b.*\b(live|living|based|located|from|stay)\b|\bwhere are you\b|\b(your )?location\b"
         r"|\bhome ?town\b|\bwhich (city|country)\b|\bwhat (city|country)\b", {"location": 6.0}),
        (r"\bwhat do you do\b|\byour (current )?(job|role|position|title|occupation|profession|employer|company)\b"
         r"|\bwhere do you work\b|\bwho do you work for\b|\bfor a living\b|\bwhat do you work on\b",
         {"role": 6.0}),
        (r"\bskill|\bgood at\b|\bexpertise\b|\bstrengths?\b|\b(tech )?stack\b|\btechnolog|\bwhat tools\b"
         r"|\blanguages? do you (use|code|program|write|know)\b|\bcan you (code|program)\b", {"skills": 6.0}),
        (r"\b(story|background|bio|biography|journey)\b|\babout (yourself|you)\b"
         r"|\bhow did you (start|get into|get started|become)\b", {"summary": 6.0}),
        (r"\b(experience|career|previous (job|role|work)s?|past (job|role|work)s?|worked (at|for|before)"
         r"|employment|work history|cv|resume|résumé)\b", {"experience": 6.0}),
        (r"\b(projects?|portfolio|open[ -]source|what have you (built|made|created))\b", {"projects": 5.0}),
        (r"\b(study|studied|degree|universit|college|school|education|qualification|graduat)", {"education": 6.0}),
        (r"\b(hobby|hobbies|interests?|interested in|free time|spare time|for fun|weekends?|outside (of )?work"
         r"|passions?)\b", {"interests": 6.0}),
        (r"\bdo you speak\b|\blanguages? (do )?you speak\b|\bspeak any\b|\bwhat languages\b|\bspoken languages?\b",
         {"languages": 6.0}),
        (r"\b(contact|e-?mail|reach you|get in touch|website|your site|linkedin)\b", {"contact": 6.0}),
    )
)
#: Personal questions that stay unanswered unless the facts have one of these keys.
_PRIVATE: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern), keys)
    for pattern, keys in (
        (r"\bhow old\b|\byour age\b|\bwhen were you born\b|\byour birthday\b", ("age", "birthday", "date_of_birth")),
        (r"\bare you (married|single|dating)\b|\bdo you have (a )?(kids|children|girlfriend|boyfriend|husband|wife)\b",
         ("family", "relationship", "children")),
        (r"\bsalary\b|\bhow much do you (earn|make)\b", ("salary",)),
        (r"\bwho do you vote\b|\bpolitic|\breligio", ("politics", "religion")),
    )
)
_ARE_YOU_AI = re.compile(
    r"\bare you (an? |the )?(real|human|person|ai|bot|chatbot|machine|program|language model|llm|twin|digital twin)\b"
    r"|\b(talking|chatting|speaking) (to|with) (an? )?(real person|human|ai|bot|machine)\b"
)
_GREETING = re.compile(
    r"^(hi|hello|hey|hiya|howdy|greetings|good (morning|afternoon|evening|day)|hola|ola|olá)\b"
    r"(\s*(there|everyone|all|you))?[\s!.,:;-]*"
)
_HOW_ARE_YOU = re.compile(r"^how are you( doing)?( today)?[\s?!.]*$")
_THANKS = re.compile(r"^(thanks|thank you|thx|cheers|many thanks)\b")
_GOODBYE = re.compile(r"^(bye|goodbye|good bye|see you|see ya|farewell)\b")
_MORE = re.compile(
    r"^(tell me more|more|go on|and\??|what else|anything else|continue|keep going|say more|elaborate)\b"
)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("’", "'").lower()).strip()


class PersonaIndex:
    """BM25 over a persona's passages, built once per persona."""

    K1 = 1.4
    B = 0.6
    HEADING_BOOST = 3.0
    NOTE_TOPIC_SHARE = 0.6

    def __init__(self, persona: Persona) -> None:
        self.persona = persona
        self.passages: list[Passage] = build_passages(persona)
        self._tf = [Counter(p.terms) for p in self.passages]
        self._len = [max(len(p.terms), 1) for p in self.passages]
        self._avg = sum(self._len) / len(self._len) if self._len else 1.0
        df: Counter[str] = Counter()
        for tf in self._tf:
            df.update(tf.keys())
        n = len(self.passages)
        self._idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self.unknown_idf = math.log(1 + (n + 0.5) / 0.5)
        # An inverted index of BM25's term-frequency part, so a question costs its terms' postings, not every passage.
        self._postings: dict[str, list[tuple[int, float]]] = {}
        for i, (tf, length) in enumerate(zip(self._tf, self._len)):
            for term, f in tf.items():
                norm = f * (self.K1 + 1) / (f + self.K1 * (1 - self.B + self.B * length / self._avg))
                self._postings.setdefault(term, []).append((i, norm))
        self.name_terms = frozenset(query_terms(persona.full_name))

    def idf(self, term: str) -> float:
        return self._idf.get(term, self.unknown_idf)

    def rank(self, terms: Mapping[str, float], boosts: Mapping[str, float]) -> list[tuple[float, Passage]]:
        """(score, passage) best first; ties keep the persona's order."""
        own = {t for t, w in terms.items() if w >= 1}
        scores = [0.0] * len(self.passages)
        for term, weight in terms.items():
            for i, norm in self._postings.get(term, ()):
                scores[i] += weight * self._idf[term] * norm
        for i, passage in enumerate(self.passages):
            if boosts:
                scores[i] += max((self._boost(tag, boosts) for tag in passage.tags), default=0.0)
            if passage.heading and own:
                # The question is (mostly) the heading above this paragraph, e.g. an FAQ entry.
                matched = len(own & passage.heading) / len(own)
                scores[i] += self.HEADING_BOOST * matched if matched >= 0.5 else 0.0
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return [(scores[i], self.passages[i]) for i in order]

    @classmethod
    def _boost(cls, tag: str, boosts: Mapping[str, float]) -> float:
        if tag.startswith("~"):
            return cls.NOTE_TOPIC_SHARE * boosts.get(tag[1:], 0.0)
        return boosts.get(tag, 0.0)

    def coverage(self, groups: Mapping[str, frozenset[str]]) -> float:
        """How much of the query (by idf weight) the persona mentions at all, itself or by a synonym, 0..1."""
        total = sum(self.idf(t) for t in groups)
        known = sum(self.idf(t) for t, synonyms in groups.items() if t in self._idf or synonyms & self._idf.keys())
        return known / total if total else 0.0


class OfflineLLM:
    """A deterministic, network-free stand-in for a language model that answers from the persona."""

    #: A passage must score at least this to be worth saying.
    THRESHOLD = 1.5
    #: ...and the query's terms must be this much covered by the persona, unless an intent matched.
    MIN_COVERAGE = 0.5
    #: Passages after the best are added while they score at least this fraction of it.
    RELATIVE = 0.55
    #: Stop adding passages once the reply is this long.
    MAX_CHARS = 1200

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
        return offline_reply(text, prompt.options, covered=not text.endswith(NOT_COVERED))

    def stream(self, prompt: Prompt) -> Iterator[str]:
        reply = self.complete(prompt)
        # Word-sized pieces, each with the whitespace after it, so they join back to exactly the reply;
        # the last one is a Reply, to say whether it was covered or cut.
        pieces = re.findall(r"\s*\S+\s*", reply) or [str(reply)]
        yield from pieces[:-1]
        yield Reply(pieces[-1], finish_reason=reply.finish_reason, covered=reply.covered)

    # --- composing the reply ------------------------------------------------

    def index(self, persona: Persona) -> PersonaIndex:
        index = self._index
        if index is None or index.persona is not persona:
            index = self._index = PersonaIndex(persona)
        return index

    def reply(self, persona: Persona, messages: Sequence[Message]) -> str:
        index = self.index(persona)
        users = [m for m in messages if m.role == "user"]
        if not users or not users[-1].content.strip():
            return self._greeting(persona)
        text = _normalise(users[-1].content)
        greeting = _GREETING.match(text)
        rest = text[greeting.end():] if greeting else text
        rest = re.sub(rf"^{re.escape(_normalise(persona.full_name))}\b|^{re.escape(_first_name(persona))}\b", "", rest)
        rest = rest.strip(" !.,:;-")
        if greeting and (not rest or _HOW_ARE_YOU.match(rest)):
            return self._greeting(persona, how_are_you=bool(rest))
        if not greeting and _HOW_ARE_YOU.match(rest):
            return self._greeting(persona, how_are_you=True)
        if _THANKS.match(rest) and len(rest.split()) <= 6:
            return THANKS
        if _GOODBYE.match(rest) and len(rest.split()) <= 6:
            return GOODBYE
        if _ARE_YOU_AI.search(rest):
            first = _first_name(persona).capitalize()
            return (
                f"I'm a digital twin of {persona.full_name}: an automated stand-in that answers only from what "
                f"{first} has written, so I won't guess beyond that. Ask me about my work, projects or background."
            )
        said: set[str] = set()
        if _MORE.match(rest) and len(query_terms(rest)) <= 1:
            # A follow-up: answer the last real question again, leaving out what was already said.
            earlier = next((t for t in map(_normalise, (m.content for m in reversed(users[:-1])))
                            if not _MORE.match(t) and query_terms(t)), None)
            if earlier is not None:
                rest = earlier
                said = {p.text for m in messages if m.role == "assistant"
                        for p in index.passages if p.text in m.content or follow_on(p.text, p.text) in m.content}
        answer = self._answer(index, rest, said)
        if answer is None:
            answer = NOTHING_MORE if said else NOT_COVERED
        return f"Hi! {answer}" if greeting else answer

    def _answer(self, index: PersonaIndex, text: str, said: set[str]) -> str | None:
        for pattern, keys in _PRIVATE:
            if pattern.search(text) and not any(k in index.persona.facts for k in keys):
                return None
        boosts: dict[str, float] = {}
        for pattern, intent in _INTENTS:
            if pattern.search(text):
                for tag, boost in intent.items():
                    boosts[tag] = max(boosts.get(tag, 0.0), boost)
        terms = {t: w for t, w in query_terms(text, expand=True).items() if t not in index.name_terms}
        groups = {t: s for t, s in query_groups(text).items() if t not in index.name_terms}
        if not boosts and index.coverage(groups) < self.MIN_COVERAGE:
            return None
        ranked = [(s, p) for s, p in index.rank(terms, boosts) if p.text not in said]
        if not ranked or ranked[0][0] < self.THRESHOLD:
            return None
        best = ranked[0][0]
        chosen = [ranked[0]]
        length = len(ranked[0][1].text)
        for score, passage in ranked[1:]:
            if len(chosen) >= self.max_passages or score < max(self.THRESHOLD, best * self.RELATIVE):
                break
            if length + len(passage.text) > self.MAX_CHARS:
                continue
            chosen.append((score, passage))
            length += len(passage.text)
        ordered = sorted((p for _, p in chosen), key=lambda p: p.order)
        out = ordered[0].text
        for before, after in zip(ordered, ordered[1:]):
            out += ("\n\n" if before.paragraph or after.paragraph else " ") + follow_on(before.text, after.text)
        return out

    def _greeting(self, persona: Persona, how_are_you: bool = False) -> str:
        opener = "Hi! I'm doing well, thanks for asking." if how_are_you else "Hi!"
        intro = persona.intro.strip().rstrip(".")
        who = f"I'm {persona.full_name}"
        if intro:
            who += f" — {lower_first(intro)}"
        return f"{opener} {who}. What would you like to know about my work, projects or background?"


def _first_name(persona: Persona) -> str:
    return _normalise(persona.full_name).split(" ", 1)[0]

