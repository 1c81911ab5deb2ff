"""A persona's passages indexed for the offline model: BM25 ranking, coverage, and the order of dated facts.

Built once per persona. A question costs the postings of its terms plus a few
set look-ups per passage, not a scan of every passage's text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping

from twin_local import dialogue
from twin_local.passages import STOPWORDS, Passage, build_passages, follow_on, normalise, query_terms, stem, tokens
from twin_server import Persona, persona_passages

_NAME = re.compile(r"(?<![.!?:]\s)(?<!^)\b[A-Z][a-z][A-Za-z0-9]*")
#: Dated facts that "before that" / "after that" move between.
_DATED = ("experience", "education")


class PersonaIndex:
    """BM25 over a persona's passages, built once per persona."""

    K1 = 1.4
    B = 0.6
    HEADING_BOOST = 3.0
    NOTE_TOPIC_SHARE = 0.6
    #: A passage holding the kind of answer asked for ("how many", "when", ...) next to the question's words.
    KIND_BOOST = 3.0
    #: Two words next to each other in a question that are further apart than this in a passage name two things.
    PROXIMITY = 2

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
        self._positions: list[dict[str, list[int]]] = []
        for passage in self.passages:
            where: dict[str, list[int]] = {}
            for position, term in enumerate(passage.terms):
                where.setdefault(term, []).append(position)
            self._positions.append(where)
        self.name_terms = frozenset(query_terms(persona.full_name))
        #: Stems of the names the persona mentions (capitalised mid-sentence, or a project's name): Gullwing, Lisbon.
        self.names = frozenset(
            stem(word.lower()) for p in self.passages for word in _NAME.findall(p.text) if word.lower() not in STOPWORDS
        ) | frozenset(stem(w) for project in persona.facts.get("projects") or () if isinstance(project, Mapping)
                      for w in tokens(str(project.get("name") or "")))
        # Which passages an intent's tag boosts, and by what share: a note named like a topic ("~projects") less.
        self._by_tag: dict[str, list[tuple[int, float]]] = {}
        self._tag_shares: list[tuple[tuple[str, float], ...]] = []
        for i, passage in enumerate(self.passages):
            shares = []
            for tag in passage.tags:
                name, share = (tag[1:], self.NOTE_TOPIC_SHARE) if tag.startswith("~") else (tag, 1.0)
                self._by_tag.setdefault(name, []).append((i, share))
                shares.append((name, share))
            self._tag_shares.append(tuple(shares))
        self._headed = [i for i, p in enumerate(self.passages) if p.heading]
        self.dated = sorted((p for p in self.passages if p.year is not None and p.tags & set(_DATED)),
                            key=lambda p: (p.year, -p.order))
        # How each passage reads when said, on its own or after another project ("Another is ...").
        self._spoken = [(p.text, follow_on(p.text, p.text)) for p in self.passages]
        # A reply can only say a passage when it has the passage's rarest inner word, whichever way it is said.
        inner = [_inner_words(alone) & _inner_words(after) for alone, after in self._spoken]
        shared = Counter(word for words in inner for word in words)
        self._unmarked: list[int] = []
        self._marked: dict[str, list[int]] = {}
        for i, words in enumerate(inner):
            if words:
                self._marked.setdefault(min(words, key=lambda w: (shared[w], -len(w), w)), []).append(i)
            else:
                self._unmarked.append(i)
        self._source_ids: list[str | None] | None = None
        full_name = normalise(persona.full_name)
        #: The first word of the person's name, normalised: "ada".
        self.first_name = full_name.split(" ", 1)[0]
        #: The person's name at the start of a message ("Ada, ..." / "Ada Quill, ...").
        self.name_opening = re.compile(rf"^{re.escape(full_name)}\b|^{re.escape(self.first_name)}\b")
        #: "Is this really Ada?"
        self.name_question = dialogue.name_question(self.first_name)

    def said_in(self, text: str) -> list[Passage]:
        """The passages ``text`` says, in the order it says them."""
        found = []
        for i in self._may_say(text):
            alone, after_another = self._spoken[i]
            at = text.find(alone)
            if at < 0 and after_another != alone:
                at = text.find(after_another)
            if at >= 0:
                found.append((at, i))
        found.sort()
        return [self.passages[i] for _, i in found]

    def said_any(self, texts: Iterable[str]) -> set[str]:
        """The texts of the passages said somewhere in ``texts``."""
        spoken = self._spoken
        return {spoken[i][0] for text in texts for i in self._may_say(text)
                if spoken[i][0] in text or spoken[i][1] in text}

    def _may_say(self, text: str) -> list[int]:
        """The passages ``text`` can hold: those whose marker word it has as a word, and those without one."""
        marked = self._marked
        return self._unmarked + [i for word in marked.keys() & text.split() for i in marked[word]]

    def source_ids(self) -> list[str | None]:
        """Each passage's persona passage id (``twin_server.persona_passages``), by ``order``; None for none.

        Worked out once per persona: the persona object does not change, a new version is a new index.
        """
        ids = self._source_ids
        if ids is None:
            passages = persona_passages(self.persona)
            found = [passages.attribute(p.text, _source_file(p)) for p in self.passages]
            ids = self._source_ids = [None if f is None else f.id for f in found]
        return ids

    def idf(self, term: str) -> float:
        return self._idf.get(term, self.unknown_idf)

    def rank(self, terms: Mapping[str, float], boosts: Mapping[str, float],
             kinds: frozenset[str] = frozenset(), best: int | None = None) -> list[tuple[float, Passage]]:
        """(score, passage) best first, the ``best`` first ones only when given; ties keep the persona's order."""
        own = {t for t, w in terms.items() if w >= 1}
        scores = [0.0] * len(self.passages)
        postings = self._postings
        for term, weight in terms.items():
            if term in postings:
                weighted = weight * self._idf[term]
                for i, norm in postings[term]:
                    scores[i] += weighted * norm
        bonus: dict[int, float] = {}
        for tag, value in boosts.items():
            for i, share in self._by_tag.get(tag, ()):
                bonus[i] = max(bonus.get(i, 0.0), share * value)
        for i, value in bonus.items():
            scores[i] += value
        if own:
            for i in self._headed:
                # The question is (mostly) the heading above this paragraph, e.g. an FAQ entry.
                matched = len(own & self.passages[i].heading) / len(own)
                scores[i] += self.HEADING_BOOST * matched if matched >= 0.5 else 0.0
        focus = {t: w * self.idf(t) for t, w in terms.items() if w >= 0.5} if kinds else {}
        focus_total = sum(focus.values())
        if focus_total:
            for i, passage in enumerate(self.passages):
                if kinds & passage.kinds and scores[i] > 0:
                    near = sum(w for t, w in focus.items() if t in passage.near_numbers) / focus_total
                    scores[i] += self.KIND_BOOST * (0.25 + 0.75 * near)
        # A stable sort, so reverse=True keeps equal scores in the persona's order.
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:best]
        return [(scores[i], self.passages[i]) for i in order]

    def boost(self, passage: Passage, boosts: Mapping[str, float]) -> float:
        """The largest intent boost among the passage's tags; a note named like a topic gets a share of it."""
        best = 0.0  # boosts and shares are positive: a tag without a boost adds 0.0
        for tag, share in self._tag_shares[passage.order]:
            value = share * boosts.get(tag, 0.0)
            if value > best:
                best = value
        return best

    def coverage(self, passage: Passage, groups: Mapping[str, frozenset[str]], literal: bool = False) -> float:
        """How much of the question (by idf weight) this one passage answers, 0..1.

        A word counts when the passage has it or one of its synonyms. A word
        that qualifies a more common one right after it in the question
        ("remote work", "solar system") must be near it in the passage too, or
        it counts as missing: English compounds end in their broader word.
        ``literal``: synonyms do not count.
        """
        where = self._positions[passage.order]
        found = {t for t, synonyms in groups.items()
                 if t in where or (not literal and any(s in where for s in synonyms))}
        ordered = list(groups)
        for a, b in zip(ordered, ordered[1:]):
            if (a in where and b in where and a not in self.names and self.idf(b) < self.idf(a)
                    and not self._near(where[a], where[b])):
                found.discard(a)
        total = sum(self.idf(t) for t in groups)
        return sum(self.idf(t) for t in found) / total if total else 1.0

    def _near(self, left: list[int], right: list[int]) -> bool:
        return any(abs(i - j) <= self.PROXIMITY for i in left for j in right)

    def mentions(self, groups: Mapping[str, frozenset[str]]) -> bool:
        """The persona has at least one of the question's words (or a synonym) somewhere."""
        return any(t in self._idf or synonyms & self._idf.keys() for t, synonyms in groups.items())

    def neighbour(self, reference: Passage, step: int) -> Passage | None:
        """The dated fact just before (step -1) or after (+1) ``reference``, of its own kind first."""
        kind = next((k for k in _DATED if k in reference.tags), None)
        for same_kind in (True, False):
            candidates = [p for p in self.dated if p is not reference and (kind in p.tags) == same_kind
                          and (p.year < reference.year if step < 0 else p.year > reference.year)]
            if candidates:
                return candidates[-1] if step < 0 else candidates[0]
        return None

    def dated_in(self, texts: Iterable[str]) -> list[Passage]:
        """The dated facts said in ``texts``, oldest first."""
        joined = "\n".join(texts)
        return [p for p in self.dated if p.text in joined]


def _inner_words(text: str) -> frozenset[str]:
    """The words of ``text`` with whitespace on both sides inside it: any text holding ``text`` has them as words."""
    return frozenset(text.split()[1:-1])


def _source_file(passage: Passage) -> str:
    """The persona file a passage was cut from."""
    note = next((t[5:] for t in passage.tags if t.startswith("note:")), None)
    if note:
        return f"{note}.md"
    if "summary" in passage.tags:
        return "summary.txt"
    return "linkedin.pdf" if "linkedin" in passage.tags else "facts.json"
