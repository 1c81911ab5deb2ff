"""A question's terms: lower-cased words without stopwords, lightly stemmed ("languages"/"language",
"based"/"base"), with the synonyms of its words and the words its stopword phrases stand for, and
their weights (with the rarest words of the recent turns) for ``PassageIndex.rank``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

__all__ = ["FOLLOW_UP", "query_groups", "query_weights", "stem", "terms"]

STOPWORDS = frozenset(
    """
    a about above after again all also am an and any anything are as at be been being but by can could did do does
    doing done don else ever for from get got had has have having he her here hers him his how i if in into is it its
    just kind know let like lot many may me might mine more most much must my myself no not now of ok okay on one
    only or other our out over own please really s say she should so some something sort such t tell than that the
    their them then there these they thing things think this those to too us very want was we well were what when
    where which who whom whose why will with would yes you your yours yourself hi hello hey thanks thank
    """.split()
)
_TOKEN = re.compile(r"[^\W_]+(?:\+\+|#)?")
_SUFFIXES = (("ies", "y"), ("ing", ""), ("ed", ""), ("ly", ""), ("s", ""))
#: "Tell me more", "go on": a follow-up whose subject is the turn before.
FOLLOW_UP = re.compile(r"^\W*(tell me more|more|go on|and\??|what else|anything else|continue|keep going|say more"
                       r"|elaborate|why|how so|really)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A light stemmer: languages/language, based/base, living/lives/live all meet (cached: a persona
    and its questions use the same few thousand words)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                break
            word = word[: -len(suffix)] + replacement
            if suffix in ("ing", "ed") and len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The text's stemmed content words, in order, repeats kept."""
    words = _TOKEN.findall(text.replace("’", "'").lower())
    return [stem(w) for w in words if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


#: Question words that also mean other words (what a persona's labels and notes say instead).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "live": ("location", "based"), "based": ("location",), "located": ("location",),
    "name": ("called", "named"), "called": ("name", "named"), "named": ("name", "called"), "living": ("location", "based"), "city": ("location", "based"),
    "country": ("location",), "hometown": ("location", "grew"), "from": ("location",),
    "job": ("role", "work"), "work": ("role", "company"), "employer": ("company",), "career": ("experience", "role"),
    "hobby": ("interests",), "hobbies": ("interests",), "fun": ("interests",), "free": ("interests",),
    "study": ("education", "degree"), "studied": ("education", "degree"), "degree": ("education",),
    "university": ("education",), "school": ("education",), "email": ("contact", "email"),
    "contact": ("email", "website"), "reach": ("email", "contact"), "website": ("website",),
    "skills": ("skills",), "good": ("skills",), "stack": ("skills",), "speak": ("languages",),
    "built": ("projects",), "build": ("projects",), "portfolio": ("projects",), "projects": ("projects",),
    "story": ("summary", "background"), "background": ("summary", "experience"), "yourself": ("summary", "headline"),
    "worked": ("experience",), "previous": ("experience",), "resume": ("experience",), "cv": ("experience",),
    "hire": ("consulting", "advisory", "contact"), "freelance": ("consulting", "advisory"),
}
#: Questions made of stopwords alone, and the words they stand for.
PHRASES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), words)
    for pattern, words in (
        (r"\bwhere (are|do) you\b|\bwhere('s| is) (home|your home)\b", ("location", "based")),
        (r"\bwhat do you do\b|\bfor a living\b|\bwho do you work for\b", ("role", "company", "work")),
        (r"\bwho are you\b|\babout (you|yourself)\b", ("headline", "summary", "role")),
    )
)


#: The stems of each word's synonyms and of each phrase's words, stemmed once (``stem`` is pure).
_SYNONYM_STEMS: dict[str, tuple[str, ...]] = {word: tuple(map(stem, others)) for word, others in SYNONYMS.items()}
_PHRASE_STEMS: tuple[tuple[re.Pattern[str], str, frozenset[str]], ...] = tuple(
    (pattern, "~" + words[0], frozenset(map(stem, words))) for pattern, words in PHRASES
)


def query_groups(message: str) -> list[frozenset[str]]:
    """The question's content words, each with the stems of its synonyms: one group a word."""
    groups: dict[str, set[str]] = {}
    words = _TOKEN.findall(message.replace("’", "'").lower())
    for word in words:
        if word in STOPWORDS and word not in SYNONYMS:
            continue
        if len(word) < 2 and not word.isdigit():
            continue
        root = stem(word)
        group = groups.get(root)
        if group is None:
            group = groups[root] = {root}
        synonyms = _SYNONYM_STEMS.get(word)
        if synonyms:
            group.update(synonyms)
    for pattern, key, meant in _PHRASE_STEMS:
        if pattern.search(message):
            # The phrase's words join the group of a word of the question they stand beside ("based").
            into = next((g for root, g in groups.items() if root in meant), None)
            if into is None:
                groups[key] = set(meant)
            else:
                into.update(meant)
    return [frozenset(g) for g in groups.values()]


def query_weights(message: str, recent: Sequence[str] = (), recent_weight: float = 0.4,
                  idf: Callable[[str], float] | None = None, recent_terms: int = 6,
                  groups: Sequence[frozenset[str]] | None = None) -> dict[str, float]:
    """Term weights of a question: its own words at 1 (synonyms at 0.8), then the rarest few words of
    the recent turns (newest first, ``recent_terms`` at most, by ``idf``) at ``recent_weight`` and less.
    ``groups``: the message's ``query_groups`` when the caller has them already."""
    weights: dict[str, float] = {}
    for group in query_groups(message) if groups is None else groups:
        # Sorted: a set's order follows the process's hash seed, and a score's last bit the order it adds terms in.
        for term in sorted(group):
            weights[term] = max(weights.get(term, 0.0), 0.8)
    for term in terms(message):
        weights[term] = 1.0
    weight, extra = recent_weight, {}
    for text in recent:
        for term in terms(text):
            if term not in weights and term not in extra:
                extra[term] = weight
        weight /= 2
    # reverse=True keeps the ties in their order, as a key of -idf would.
    rarest = sorted(extra, key=idf, reverse=True)[:recent_terms] if idf else list(extra)[:recent_terms]
    weights.update((t, extra[t]) for t in rarest if not idf or idf(t) > 0)
    return weights
