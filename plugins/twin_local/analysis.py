"""The offline model's text analysis: tokens, Snowball stems, stopwords, a small paraphrase and synonym map.

Both sides go through it: persona passages with ``terms``, questions with
``query_groups`` / ``query_terms``. A question's word may also mean other words
(its synonyms, matched at a lower weight); a few multi-word paraphrases are
rewritten to one word first ("circuit board" → "pcb", "spare time" → "hobbies").
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

import snowballstemmer

P = ParamSpec("P")
R = TypeVar("R")

STOPWORDS = frozenset(
    """
    a about above after again all also am an and any anyone anybody anything are as at be been being but by can
    could currently did do does doing done don else ever everyone for from get got had has have having he her here
    hers him his how i if in into is it its just kind know let like lot many may me might mine more most much must
    my myself no not now of ok okay on one only or other our out over please really s say she should so some someone
    somebody something sort still such t tell than that the their them then there these they thing things think this
    those to too us very want was we well were what when where which who whom whose why will with would yes you your
    yours yourself hi hello hey thanks thank
    """.split()
)

#: Words that say what kind of answer is wanted or how the visitor feels about it, not what it is about: they
#: rank at a low weight and a persona need not mention them for a question to count as covered.
WEAK = frozenset(
    """
    big large long tall wide heavy fast far deep small accurate accuracy precise precision size sized number
    often soon quickly year years old exactly roughly approximately usually typically normally generally
    choose chose chosen pick picked decide decided make made go went become became start started begin began finish
    finished happen happened enjoy love prefer feel find found believe opinion opinions view views thought thoughts
    favourite favorite best part parts actually time times before after prior previously earlier later next
    """.split()
)

#: Multi-word paraphrases, rewritten to one word before tokenising.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"\b{pattern}\b"), word)
    for pattern, word in (
        (r"circuit boards?|printed circuits?", "pcb"),
        (r"(free|spare|leisure|down) ?time|for fun", "hobbies"),
        (r"work(ing)? for|employed (by|at)", "employer"),
        (r"real person|human being|flesh and blood", "human"),
        (r"get in touch|reach (you|out)", "contact"),
        (r"master'?s( degree)?", "masters"),
        (r"bachelor'?s( degree)?|undergrad(uate)?( degree)?", "bachelors"),
    )
)

#: Query words that also mean other words (matched at half weight). Keys and values are plain words.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "live": ("based",),
    "city": ("based",),
    "home": ("based",),
    "job": ("work", "role"),
    "position": ("role", "work"),
    "title": ("role",),
    "occupation": ("role", "work"),
    "profession": ("role", "work"),
    "career": ("work", "role"),
    "employer": ("company", "work", "role"),
    "company": ("work", "role"),
    "organisation": ("company", "work", "role"),
    "organization": ("company", "work", "role"),
    "hobby": ("interests",),
    "hobbies": ("interests",),
    "pastime": ("interests",),
    "sport": ("interests",),
    "sports": ("interests",),
    "weekend": ("interests",),
    "weekends": ("interests",),
    "code": ("software", "programming"),
    "coding": ("software", "programming"),
    "program": ("software", "code"),
    "study": ("degree",),
    "studied": ("degree",),
    "masters": ("msc", "ma", "mba", "master"),
    "bachelors": ("bsc", "beng", "ba", "bachelor"),
    "doctorate": ("phd",),
    "university": ("school", "institute", "college"),
    "college": ("university", "school", "institute"),
    "ocean": ("sea", "marine"),
    "sea": ("marine", "ocean"),
    "water": ("sea", "marine"),
    "ship": ("boat", "ferry"),
    "vessel": ("boat", "ferry"),
    "robot": ("robotics",),
    "robots": ("robotics",),
    "team": ("lead",),
    "people": ("team", "lead", "crew", "staff", "employees", "colleagues", "members", "makers", "engineers",
               "developers", "workers", "students", "volunteers"),
    "staff": ("team", "lead", "crew"),
    "colleagues": ("team", "crew"),
    "manage": ("lead", "team", "run"),
    "manages": ("lead", "team", "run"),
    "managing": ("lead", "team", "run"),
    "manager": ("lead", "team"),
    "supervise": ("lead", "team"),
    "email": ("contact", "reach"),
    "contact": ("email", "reach"),
    "phone": ("contact", "reach"),
    "hire": ("consulting", "advisory"),
    "hiring": ("consulting", "advisory"),
    "freelance": ("consulting", "advisory"),
    "consult": ("consulting", "advisory"),
    "contract": ("consulting", "advisory"),
    "available": ("consulting", "advisory", "open"),
    "cost": ("price", "euros", "dollars", "pounds", "budget"),
    "costs": ("price", "euros", "dollars", "pounds", "budget"),
    "price": ("cost", "euros", "dollars", "pounds", "budget"),
    "expensive": ("cost", "price", "euros", "dollars", "pounds"),
    "cheap": ("cost", "price", "euros", "dollars", "pounds"),
    "afford": ("cost", "price", "euros", "dollars", "pounds"),
    "money": ("cost", "price", "euros", "dollars", "pounds"),
    "pcb": ("electronics",),
    "electronics": ("electronic", "pcb"),
    "system": ("stack", "software", "platform"),
    "conference": ("talks",),
    "conferences": ("talks",),
    "presentations": ("talks",),
    "mentoring": ("mentor",),
    "coach": ("mentor",),
    "grow": ("grew",),
    "childhood": ("grew",),
    "raised": ("grew",),
    "hometown": ("grew", "town"),
}

#: Well-known programming languages: what "language" means in "what language is it written in?".
PROGRAMMING_LANGUAGES = frozenset(
    "python rust java javascript typescript golang ruby kotlin swift scala haskell julia matlab php perl lua "
    "elixir erlang ocaml fortran cobol sql bash zig dart c++ c# cpp csharp".split()
)
_SPOKEN = re.compile(r"\b(speak|spoken|fluent|native|foreign|mother tongue)\b")

_TOKEN = re.compile(r"[a-z0-9]+(?:\+\+|#)?")
_local = threading.local()
_MESSAGE_CACHES: list[Any] = []


def message_cache(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` cached by its arguments: what is read off a message's text.

    A conversation's earlier messages are read again on every follow-up;
    ``clear_message_caches`` forgets them all.
    """
    cached = functools.lru_cache(maxsize=1024)(function)
    _MESSAGE_CACHES.append(cached)
    return cached  # type: ignore[return-value]


def clear_message_caches() -> None:
    """Forget every message read so far, so the next one is read afresh (what ``benchmarks.bench_offline`` does)."""
    for cached in _MESSAGE_CACHES:
        cached.cache_clear()


@functools.lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """The Snowball (Porter 2) English stem: languages/language, based/base, living/lives/live all meet."""
    if len(word) <= 2 or not word.isalpha():
        return word
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:  # a stemmer keeps state while it works: one per thread
        stemmer = _local.stemmer = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


_SPACE = re.compile(r"\s+")


@message_cache
def normalise(text: str) -> str:
    """Lower-cased, curly apostrophes straightened, whitespace collapsed."""
    return _SPACE.sub(" ", text.replace("’", "'").lower()).strip()


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.replace("’", "'").lower())


def terms(text: str) -> list[str]:
    """The text's stemmed content words, in order, repeats kept."""
    return [stem(t) for t in tokens(text) if t not in STOPWORDS and (len(t) > 1 or t.isdigit())]


def paraphrased(text: str) -> str:
    text = normalise(text)
    for pattern, word in _PHRASES:
        text = pattern.sub(word, text)
    return text


@message_cache
def _analyse(text: str) -> tuple[Mapping[str, frozenset[str]], frozenset[str], Mapping[str, frozenset[str]]]:
    """(groups, strong, strong groups): every content word's stem with its synonyms' stems, the stems of the
    non-weak ones, and the groups of those.
    """
    groups: dict[str, frozenset[str]] = {}
    strong: set[str] = set()
    text = paraphrased(text)
    coding = not _SPOKEN.search(text)
    for token in tokens(text):
        if token in STOPWORDS or (len(token) < 2 and not token.isdigit()):
            continue
        root = stem(token)
        synonyms = _CODING if coding and token in ("language", "languages") else _STEMMED.get(token, frozenset())
        groups[root] = groups.get(root, frozenset()) | synonyms
        if token not in WEAK:
            strong.add(root)
    strong_groups = {t: s for t, s in groups.items() if t in strong}
    return MappingProxyType(groups), frozenset(strong), MappingProxyType(strong_groups)


def query_groups(text: str, weak: bool = True) -> Mapping[str, frozenset[str]]:
    """Each content word's stem, with the stems of its synonyms; ``weak=False`` leaves out the weak words."""
    groups, _, strong_groups = _analyse(text)
    return groups if weak else strong_groups


@message_cache
def query_terms(text: str, expand: bool = False) -> Mapping[str, float]:
    """A query's terms with their weights: 1 for its own words (0.3 for weak ones), 0.5 for synonyms."""
    groups, strong, _ = _analyse(text)
    out = {t: 1.0 if t in strong else 0.3 for t in groups}
    if expand:
        for synonyms in groups.values():
            for synonym in sorted(synonyms):
                out.setdefault(synonym, 0.5)
    return MappingProxyType(out)


_STEMMED = {word: frozenset(stem(s) for s in synonyms) for word, synonyms in SYNONYMS.items()}
_CODING = frozenset(stem(s) for s in PROGRAMMING_LANGUAGES)
