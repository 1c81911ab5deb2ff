"""A persona cut into first-person passages for the offline model.

Facts become templated sentences ("I'm based in Lisbon."), the summary,
notes and LinkedIn text become paragraphs. Each passage carries tags
("location", "skills", ...) that the offline model's intent map boosts, its
terms (``twin_local.analysis``: stems without stopwords), the kinds of
specific answer it holds (a year, a price, a size: ``answer_kinds``) and,
for a dated fact, its first year.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from twin_local.analysis import (
    PROGRAMMING_LANGUAGES, STOPWORDS, normalise, query_groups, query_terms, stem, terms, tokens,
)
from twin_server import Persona

__all__ = ["Passage", "build_passages", "follow_on", "lower_first", "answer_kinds",
           "STOPWORDS", "normalise", "query_groups", "query_terms", "stem", "terms", "tokens"]

_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred hundreds "
    "thousand thousands million millions dozen dozens couple few several half".split()
)
_CURRENCY = frozenset("euro euros eur dollar dollars usd pound pounds gbp quid".split())
_TIME_UNITS = frozenset("second seconds minute minutes hour hours day days week weeks month months year years "
                        "decade decades".split())
_UNITS = _TIME_UNITS | frozenset(
    "m cm mm km metre metres meter meters centimetre centimetres kilometre kilometres kg g tonne tonnes hz khz "
    "mhz ghz knot knots mph kph feet ft foot inch inches mile miles litre litres w kw watt watts v volt volts "
    "percent".split()
)
_YEAR = re.compile(r"^(19|20)\d\d$")


def answer_kinds(text: str, places: frozenset[str] = frozenset()) -> tuple[frozenset[str], frozenset[str]]:
    """(kinds, near): which kinds of specific answer ``text`` holds, and the stems of the sentences holding them.

    Kinds: "year", "quantity" (a number, in digits or words), "money" (a number with a currency),
    "measure" (a number with a unit), "duration" (a time span), "place" (one of ``places``, the
    person's location words) and "code" (a programming language).
    """
    kinds: set[str] = set()
    near: set[str] = set()
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        words = tokens(sentence)
        found: set[str] = set()
        for i, word in enumerate(words):
            after = words[i + 1:i + 3]
            if _YEAR.match(word):
                found |= {"year", "duration"}
            elif word.isdigit() or word in _NUMBER_WORDS:
                found.add("quantity")
                if any(w in _CURRENCY for w in after) or re.search(rf"[€$£]\s?{re.escape(word)}\b", sentence):
                    found.add("money")
                if any(w in _UNITS for w in after):
                    found.add("measure")
                if any(w in _TIME_UNITS for w in after):
                    found.add("duration")
            elif word in _TIME_UNITS and i and words[i - 1] in ("for", "of", "within", "in"):
                found.add("duration")
            elif word in PROGRAMMING_LANGUAGES:
                found.add("code")
            if places and stem(word) in places:
                found.add("place")
        if found:
            kinds |= found
            near.update(stem(w) for w in words if w not in STOPWORDS)
    return frozenset(kinds), frozenset(near)


@dataclasses.dataclass(frozen=True)
class Passage:
    text: str
    tags: frozenset[str]
    terms: tuple[str, ...]
    order: int
    paragraph: bool = False
    heading: frozenset[str] = frozenset()  # terms of the note heading above it, e.g. an FAQ question
    kinds: frozenset[str] = frozenset()  # the kinds of specific answer it holds (see ``answer_kinds``)
    near_numbers: frozenset[str] = frozenset()  # the stems of the words around its numbers
    year: int | None = None  # the first year it names, for "before that" on a dated fact


#: How a project's passage begins; when several projects follow each other the later ones say "Another is".
PROJECT_LEAD = "One of my projects is "


def follow_on(before: str, text: str) -> str:
    """``text`` as said right after ``before``: no second "One of my projects is"."""
    if before.startswith(PROJECT_LEAD) and text.startswith(PROJECT_LEAD):
        return "Another is " + text[len(PROJECT_LEAD):]
    return text


def lower_first(text: str) -> str:
    """"Marine engineer" → "marine engineer", but "NASA engineer" stays."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def _article(phrase: str) -> str:
    if phrase.lower().startswith(("a ", "an ", "the ")):
        return phrase
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _and(items: Iterable[str]) -> str:
    items = [i for i in items if i]
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _item(value: Any, keys: tuple[str, ...], detail: tuple[str, ...] = ()) -> str:
    """"French (fluent)" from {"name": "French", "level": "fluent"}, or the string itself."""
    if not isinstance(value, Mapping):
        return _str(value)
    head = next((_str(value.get(k)) for k in keys if _str(value.get(k))), "")
    extra = [_str(value.get(k)) for k in detail if _str(value.get(k))]
    return f"{head} ({', '.join(extra)})" if head and extra else head or ", ".join(extra)


def _span(years: Any) -> tuple[str, str, bool]:
    """(start, end, current) of "2019–2023", "2021-present", 2020."""
    text = _str(years)
    parts = [p.strip() for p in re.split(r"\s*[–—-]\s*|\s+to\s+", text, maxsplit=1)] if text else []
    current = bool(re.search(r"present|now|current|today", text, re.I))
    start = parts[0] if parts else ""
    end = parts[1] if len(parts) > 1 and not current else ""
    return start, end, current


def _fact_sentences(persona: Persona) -> list[tuple[str, set[str]]]:
    facts = persona.facts
    out: list[tuple[str, set[str]]] = []
    headline = _str(facts.get("headline"))
    name = f"I'm {persona.full_name}" + (f" — {lower_first(headline).rstrip('.')}" if headline else "")
    out.append((_sentence(name), {"name"}))

    role, company = _str(facts.get("current_role")), _str(facts.get("company"))
    experience = [e for e in facts.get("experience") or () if isinstance(e, Mapping)]
    current = next((e for e in experience if _span(e.get("years"))[2]
                    and (not role or _str(e.get("role")) == role)), None)
    if role or company or current is not None:
        if current is not None:
            role, company = role or _str(current.get("role")), company or _str(current.get("company"))
        text = "I work as " + _article(role) if role else "I work"
        text += f" at {company}" if company else ""
        if current is not None:
            start = _span(current.get("years"))[0]
            text += f", where I've been since {start}" if start and company else ""
            text = _sentence(text) + " " + _sentence(_str(current.get("description")))
        out.append((_sentence(text.strip()), {"role", "experience"} if current is not None else {"role"}))

    if _str(facts.get("location")):
        out.append((f"I'm based in {_str(facts['location']).rstrip('.')}.", {"location"}))
    skills = [_str(s) for s in facts.get("skills") or ()]
    if skills:
        verb = "skills are" if len(skills) > 1 else "skill is"
        out.append((_sentence(f"My main {verb} {_and(skills)}"), {"skills"}))
    for entry in experience:
        if entry is current:
            continue
        start, end, now = _span(entry.get("years"))
        what = _article(_str(entry.get("role"))) if _str(entry.get("role")) else "working"
        where = f" at {_str(entry.get('company'))}" if _str(entry.get("company")) else ""
        when = f"From {start} to {end} I was" if start and end else f"In {start} I was" if start else "I was"
        if now:
            when = f"Since {start} I've also been" if start else "I'm also"
        text = _sentence(f"{when} {what}{where}") + " " + _sentence(_str(entry.get("description")))
        out.append((text.strip(), {"experience"}))
    for entry in facts.get("education") or ():
        if isinstance(entry, Mapping):
            degree = _str(entry.get("degree"))
            school = next((_str(entry.get(k)) for k in ("school", "institution", "university") if entry.get(k)), "")
            years = _str(entry.get("years"))
            text = f"I did my {degree}" if degree else "I studied"
            text += (f" at {school}" if school else "") + (f" ({years})" if years else "")
        else:
            text = f"My education includes {_str(entry)}"
        out.append((_sentence(text), {"education"}))
    for project in facts.get("projects") or ():
        if not isinstance(project, Mapping) or not _str(project.get("name")):
            continue
        description = _str(project.get("description"))
        text = f"{PROJECT_LEAD}{_str(project['name'])}" + (f": {description}" if description else "")
        url = _str(project.get("url"))
        text = _sentence(text.rstrip(".") + (f" ({url})" if url else ""))
        out.append((text, {"projects"}))
    languages = [_item(v, ("name", "language"), ("level",)) for v in facts.get("languages") or ()]
    if any(languages):
        out.append((_sentence(f"I speak {_and(languages)}"), {"languages"}))
    interests = [_str(i) for i in facts.get("interests") or ()]
    if any(interests):
        out.append((_sentence(f"Outside work I'm into {_and(interests)}"), {"interests"}))
    email, website = _str(facts.get("email")), _str(facts.get("website"))
    if email or website:
        text = f"You can reach me at {email}" if email else ""
        if website:
            text += f", and my website is {website}" if email else f"My website is {website}"
        out.append((_sentence(text), {"contact"}))
    known = {"full_name", "headline", "current_role", "company", "location", "skills", "experience", "education",
             "projects", "languages", "interests", "email", "website"}
    for key in facts:
        if key in known:
            continue
        value = facts[key]
        if isinstance(value, (list, tuple)):
            text = _and([_item(v, ("name", "title"), ()) for v in value])
        else:
            text = _item(value, ("name", "title", "value"), ())
        if text:
            out.append((_sentence(f"My {str(key).replace('_', ' ')}: {text}"), {str(key)}))
    return out


def _clean_markdown(line: str) -> str:
    line = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", line)
    line = re.sub(r"(\*\*|__|`)", "", line)
    return re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", line).strip()


def _chunks(text: str, limit: int = 500) -> list[str]:
    """Paragraphs of ``text``; a long one is cut at sentence ends into pieces of about ``limit``."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = re.sub(r"\s+", " ", para).strip()
        if len(para) <= limit:
            if para:
                out.append(para)
            continue
        piece = ""
        for sentence in re.split(r"(?<=[.!?])\s+", para):
            if piece and len(piece) + len(sentence) > limit:
                out.append(piece)
                piece = ""
            piece = f"{piece} {sentence}".strip()
        if piece:
            out.append(piece)
    return out


def _note_paragraphs(text: str) -> list[tuple[str, str]]:
    """(heading, paragraph) pairs of a markdown note; each list item is its own paragraph."""
    heading, lines, out = "", [], []

    def flush() -> None:
        if lines:
            out.extend((heading, chunk) for chunk in _chunks(" ".join(lines)))
            lines.clear()

    for raw in text.splitlines():
        if re.match(r"^\s*#{1,6}\s", raw):
            flush()
            heading = _clean_markdown(raw.lstrip().lstrip("#"))
        elif not raw.strip():
            flush()
        elif re.match(r"^\s*(?:[-*+]|\d+[.)])\s+", raw):
            flush()
            lines.append(_clean_markdown(raw))
            flush()
        else:
            lines.append(_clean_markdown(raw))
    flush()
    return out


_UNSPOKEN_TAGS = frozenset({"note", "summary", "linkedin"})


def build_passages(persona: Persona) -> list[Passage]:
    """Every passage of the persona, in the order a reply should present them."""
    raw: list[tuple[str, set[str], str, bool]] = [(t, tags, "", False) for t, tags in _fact_sentences(persona)]
    for para in _chunks(persona.summary):
        raw.append((para, {"summary"}, "", True))
    for name in sorted(persona.notes):
        for heading, para in _note_paragraphs(persona.notes[name]):
            # "~projects": a note named like a topic answers that topic too, after the facts.
            raw.append((para, {"note", f"note:{name}", f"~{name}"}, f"{name} {heading}", True))
    for para in _chunks(persona.linkedin):
        raw.append((para, {"linkedin"}, "", True))
    places = frozenset(terms(_str(persona.facts.get("location"))))
    passages: list[Passage] = []
    seen: set[str] = set()
    for text, tags, context, paragraph in raw:
        if not text or text in seen:
            continue
        seen.add(text)
        labels = tuple(stem(tag) for tag in sorted(tags) if tag not in _UNSPOKEN_TAGS and tag.isalpha())
        words = tuple(terms(f"{context} {text}" if context else text)) + labels
        heading = frozenset(terms(context.split(" ", 1)[1] if context else ""))
        kinds, near = answer_kinds(text, places)
        year = re.search(r"\b(?:19|20)\d\d\b", text)
        passages.append(Passage(text, frozenset(tags), words, len(passages), paragraph, heading, kinds, near,
                                int(year.group()) if year and not paragraph else None))
    return passages
