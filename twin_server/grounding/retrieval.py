"""BM25 over a persona's passages: which of them bear on a question, best first.

The index is built once per persona object (``PassageIndex(passages)``) and a
query costs the postings of its own terms, not a pass over every passage, so
a 500 KB persona answers as fast as a small one: a word in most passages (a
word of the conversation, say) is read best first, only as far as the caller
takes passages. A text's terms are ``query.terms``.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from twin_server.grounding.passages import Passage
from twin_server.grounding.query import query_groups, terms

__all__ = ["PassageIndex"]


class PassageIndex:
    """BM25 (k1 1.4, b 0.6) over passages, with each passage's title counted twice."""

    K1 = 1.4
    B = 0.6
    #: Below this idf (a word in more than about 80% of the passages) a word only counts alone.
    COMMON_IDF = 0.2
    #: ``rank`` scores a word's postings up front when they are at most this long or this share of
    #: the passages; longer ones it walks best first, as far as the caller reads.
    SHORT = 48
    LONG = 0.25

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.passages = tuple(passages)
        counts = [Counter(terms(f"{p.title} {p.title} {p.text}")) for p in self.passages]
        lengths = [max(sum(c.values()), 1) for c in counts]
        average = sum(lengths) / len(lengths) if lengths else 1.0
        df: Counter[str] = Counter()
        for count in counts:
            df.update(count.keys())
        n = len(self.passages)
        self._idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        #: The idf of a word no passage holds.
        self._unknown = math.log(1 + (n + 0.5) / 0.5)
        # Per term: the passages holding it and their BM25 contribution (idf × saturated tf), so a
        # query costs its terms' postings only.
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for i, (count, length) in enumerate(zip(counts, lengths)):
            for term, f in count.items():
                norm = f * (self.K1 + 1) / (f + self.K1 * (1 - self.B + self.B * length / average))
                ids, values = postings.setdefault(term, ([], []))
                ids.append(i)
                values.append(self._idf[term] * norm)
        self._postings = postings
        self._contrib: list[dict[str, float]] = [{} for _ in self.passages]
        self._term_sets: dict[int, frozenset[str]] = {}  # filled as ``relevant`` and ``attribute`` ask
        self._by_contribution: dict[str, tuple[list[tuple[float, int]], frozenset[int]]] = {}  # filled as ``rank`` asks
        for term, (ids, values) in postings.items():
            for i, value in zip(ids, values):
                self._contrib[i][term] = value

    def idf(self, term: str) -> float:
        return self._idf.get(term, 0.0)

    def scores(self, weights: Mapping[str, float]) -> dict[int, float]:
        """Passage position → BM25 score, for the passages that match at least one term."""
        out: dict[int, float] = {}
        get = out.get
        for term, weight in weights.items():
            posting = self._postings.get(term)
            if posting is None:
                continue
            for i, value in zip(*posting):
                out[i] = get(i, 0.0) + weight * value
        return out

    def rank(self, weights: Mapping[str, float], start: int = 0) -> Iterator[tuple[float, int]]:
        """(score, position) of the passages from ``start`` on, best first, lazily: the matching ones by
        score, then the rest in the persona's order (ties keep it too).

        A word found in nearly every passage (idf below ``COMMON_IDF``) adds almost nothing to any
        score but costs a walk over the whole index, so it only counts when the question has no
        rarer word. A caller that takes the first few pays for those only.
        """
        rare = {t: w for t, w in weights.items() if self._idf.get(t, 0.0) >= self.COMMON_IDF}
        weights = rare or weights
        postings = self._postings
        longest = max(self.SHORT, int(len(self.passages) * self.LONG))
        walked = [t for t, w in weights.items() if w > 0 and t in postings and len(postings[t][0]) > longest]
        scores = self._scores_but_walked(weights, walked)
        heap = [(-v, i) for i, v in scores.items() if i >= start]
        heapq.heapify(heap)
        if walked:
            yield from self._walk(weights, walked, scores, heap, start)
        while heap:
            negated, i = heapq.heappop(heap)
            yield -negated, i
        for i in range(start, len(self.passages)):
            if i not in scores:
                yield 0.0, i

    def _scores_but_walked(self, weights: Mapping[str, float], walked: Sequence[str]) -> dict[int, float]:
        """``scores`` of the passages holding a word not in ``walked``, each summed in ``weights``' order
        as ``scores`` sums it (the walked words looked up per passage), so the floats are the same."""
        if not walked:
            return self.scores(weights)
        postings, contrib = self._postings, self._contrib
        held: set[int] = set()
        for term in weights:
            if term not in walked and term in postings:
                held.update(postings[term][0])
        out: dict[int, float] = {}
        get = out.get
        for term, weight in weights.items():
            if term in walked:
                for i in held.intersection(self._descending(term)[1]):
                    out[i] = get(i, 0.0) + weight * contrib[i][term]
            elif (posting := postings.get(term)) is not None:
                for i, value in zip(*posting):
                    out[i] = get(i, 0.0) + weight * value
        return out

    def _walk(self, weights: Mapping[str, float], walked: Sequence[str], scores: dict[int, float],
              heap: list[tuple[float, int]], start: int) -> Iterator[tuple[float, int]]:
        """Yield from ``heap`` the passages no unseen one can outscore, reading the ``walked`` words'
        postings best first into ``scores`` and ``heap`` until every one is read.

        An unseen passage holds walked words only, each worth at most the next value of its list:
        ``bound`` adds those in the order a score adds its terms, so (rounding being monotonic) no
        unseen passage's float exceeds it, and a passage scoring above it is safe to yield, a tie not.
        """
        factors = [weights[t] for t in walked]
        lists = [self._descending(t)[0] for t in walked]
        pop, push = heapq.heappop, heapq.heappush
        if len(walked) == 1:  # the usual case, in short: the bound is the next value's worth, a score its own
            factor = factors[0]
            for value, i in lists[0]:
                bound = factor * value
                while heap and -heap[0][0] > bound:
                    negated, j = pop(heap)
                    yield -negated, j
                if i not in scores:
                    scores[i] = bound
                    if i >= start:
                        push(heap, (-bound, i))
            return
        depths = [0] * len(walked)
        contrib = self._contrib
        while True:
            bound, step, most = 0.0, -1, -1.0
            for k, (factor, values, depth) in enumerate(zip(factors, lists, depths)):
                if depth < len(values):
                    worth = factor * values[depth][0]
                    bound += worth
                    if worth > most:
                        step, most = k, worth
            if step < 0:
                return
            while heap and -heap[0][0] > bound:
                negated, i = pop(heap)
                yield -negated, i
            i = lists[step][depths[step]][1]
            depths[step] += 1
            if i not in scores:
                held, score = contrib[i], 0.0
                for term, factor in zip(walked, factors):
                    value = held.get(term)
                    if value is not None:
                        score += factor * value
                scores[i] = score
                if i >= start:
                    push(heap, (-score, i))

    def _descending(self, term: str) -> tuple[list[tuple[float, int]], frozenset[int]]:
        """The term's (contribution, position) pairs, largest first, and its positions (made on first
        use: a persona's questions walk a few common words)."""
        found = self._by_contribution.get(term)
        if found is None:
            ids, values = self._postings[term]
            found = self._by_contribution[term] = (sorted(zip(values, ids), reverse=True), frozenset(ids))
        return found

    def relevant(self, message: str, among: Iterable[int] | None = None, *, limit: int = 5,
                 relative: float = 0.5, coverage: float = 0.5,
                 groups: Sequence[frozenset[str]] | None = None) -> list[int]:
        """The passages a reply to ``message`` is based on, best first (``[]`` when none is).

        A passage counts when it matches the question's words (or their synonyms) carrying at
        least ``coverage`` of the question's idf weight, so a single common word is not enough,
        and scores at least ``relative`` of the best passage. ``groups``: the message's
        ``query_groups`` when the caller has them already.
        """
        if groups is None:
            groups = query_groups(message)
        unknown = self._unknown
        weight_of = [max((self._idf[t] for t in g if t in self._idf), default=unknown) for g in groups]
        total = sum(weight_of)
        if not total:
            return []
        weights: dict[str, float] = {}
        for group in groups:
            for term in sorted(group):  # in the same order in every process, as ``query_weights``
                weights[term] = 1.0
        chosen = None if among is None else set(among)
        # (-score, position): sorted as is, best first, ties in the persona's order.
        if chosen is None:
            ranked = [(-s, i) for i, s in self.scores(weights).items()]
        elif sum(len(self._postings[t][0]) for t in weights if t in self._postings) <= len(chosen) * len(weights):
            ranked = [(-s, i) for i, s in self.scores(weights).items() if i in chosen]
        else:  # a few passages of a large persona: scoring each costs less than the postings walk
            ranked = [(-s, i) for i in chosen if (s := self.score_of(i, weights)) > 0]
        ranked.sort()
        best = -ranked[0][0] if ranked else 0.0
        out: list[int] = []
        for negated, i in ranked:
            if len(out) >= limit or -negated < best * relative:
                break
            have = self.terms_of(i)
            matched = sum(w for g, w in zip(groups, weight_of) if not have.isdisjoint(g))
            if matched / total >= coverage:
                out.append(i)
        return out

    def holding(self, words: Iterable[str]) -> set[int]:
        """The positions of the passages holding at least one of ``words``."""
        found: set[int] = set()
        for word in words:
            posting = self._postings.get(word)
            if posting is not None:
                found.update(posting[0])
        return found

    def score_of(self, position: int, weights: Mapping[str, float]) -> float:
        contrib = self._contrib[position]
        return sum(w * contrib[t] for t, w in weights.items() if t in contrib)

    def terms_of(self, i: int) -> frozenset[str]:
        cache = self._term_sets
        found = cache.get(i)
        if found is None:
            p = self.passages[i]
            found = cache[i] = frozenset(terms(f"{p.title} {p.text}"))
        return found
