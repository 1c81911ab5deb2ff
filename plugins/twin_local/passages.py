"""A persona cut into first-person passages, and the text analysis the offline model ranks them with.

Facts become templated sentences ("I'm based in Lisbon."), the summary,
notes and LinkedIn text become paragraphs. Each passage carries tags
("location", "skills", ...) that the offline model's intent map boosts, and
its terms: lower-cased words without stopwords, lightly stemmed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from twin_server import Persona

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

#: Query words that also mean other words (expanded at half weight).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "live": ("based",),
    "city": ("based",),
    "job": ("work", "role"),
    "career": ("work", "role"),
    "hobby": ("interests",),
    "hobbies": ("interests",),
    "code": ("software", "programming"),
    "coding": ("software", "programming"),
    "program": ("software", "code"),
    "study": ("degree",),
    "studied": ("degree",),
    "ocean": ("sea", "marine"),
    "sea": ("marine", "ocean"),
    "robot": ("robotics",),
    "robots": ("robotics",),
    "team": ("lead",),
    "email": ("contact", "reach"),
    "hire": ("consulting", "advisory"),
    "grow": ("grew",),
    "childhood": ("grew",),
    "freelance": ("consulting", "advisory"),
}

_TOKEN = re.compile(r"[a-z0-9]+(?:\+\+|#)?")
_SUFFIXES = (("ies", "y"), ("ing", ""), ("ed", ""), ("ly", ""), ("s", ""))


def stem(word: str) -> str:
    """A light stemmer: languages/language, based/base, living/lives/live all meet."""
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


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.replace("’", "'").lower())


def terms(text: str) -> list[str]:
    """The text's stemmed content words, in order, repeats kept."""
    return [stem(t) for t in tokens(text) if t not in STOPWORDS and (len(t) > 1 or t.isdigit())]


def query_groups(text: str) -> dict[str, frozenset[str]]:
    """Each content word's stem, with the stems of its synonyms."""
    out: dict[str, frozenset[str]] = {}
    for token in tokens(text):
        if token in STOPWORDS or (len(token) < 2 and not token.isdigit()):
            continue
        root = stem(token)
        out[root] = out.get(root, frozenset()) | {stem(s) for s in _SYNONYMS.get(token, ())}
    return out


def query_terms(text: str, expand: bool = False) -> dict[str, float]:
    """A query's terms with their weights: 1 for its own words, 0.5 for synonyms when ``expand``."""
    groups = query_groups(text)
    out = dict.fromkeys(groups, 1.0)
    if expand:
        for synonyms in groups.values():
            for synonym in sorted(synonyms):
                out.setdefault(synonym, 0.5)
    return out


@dataclasses.dataclass(frozen=True)
class Passage:
    text: str
    tags: frozenset[str]
    terms: tuple[str, ...]
    order: int
    paragraph: bool = False
    heading: frozenset[str] = frozenset()  # terms of the note heading above it, e.g. an FAQ question


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
    passages: list[Passage] = []
    seen: set[str] = set()
    for text, tags, context, paragraph in raw:
        if not text or text in seen:
            continue
        seen.add(text)
        labels = tuple(stem(tag) for tag in sorted(tags) if tag not in _UNSPOKEN_TAGS and tag.isalpha())
        words = tuple(terms(f"{context} {text}" if context else text)) + labels
        heading = frozenset(terms(context.split(" ", 1)[1] if context else ""))
        passages.append(Passage(text, frozenset(tags), words, len(passages), paragraph, heading))
    return passages
