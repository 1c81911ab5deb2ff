"""The persona cut into passages, each with a stable id and a title a person can read.

Core passages are the facts of ``facts.json``, one per key (id
``facts.json#location``, title "Location"): they are always in the prompt.
Knowledge passages are the rest, cut at headings and paragraphs into pieces of
at most ``MAX_CHARS``: ``summary.txt``, the LinkedIn text (``linkedin.pdf``)
and each note (``faq.md#where-are-you-based``, title "faq.md › Where are you
based?"; a section too long for one piece continues as ``…:2``). The same
persona always gives the same passages with the same ids, and the private
material ``public_persona`` removes never becomes one.

``persona_passages(persona)`` builds them once per persona object.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence

from twin_server.grounding.query import terms
from twin_server.persona_layout import FACTS_FILE, LINKEDIN_FILE, NOTE_SUFFIX, SUMMARY_FILE, public_persona
from twin_server.turn.prompt import fact_label, render_facts
from twin_server.types import Persona, Source

__all__ = ["MAX_CHARS", "Passage", "PersonaPassages", "persona_passages"]

#: The longest knowledge passage, in characters (about 300 tokens).
MAX_CHARS = 900
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclasses.dataclass(frozen=True)
class Passage:
    """One piece of the persona. ``core`` passages (the facts) are never cut from a prompt."""

    id: str
    title: str
    text: str
    file: str
    core: bool = False
    order: int = 0

    @property
    def source(self) -> Source:
        return Source(self.id, self.title)


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60] or "section"


def _pieces(paragraphs: Sequence[str], limit: int = MAX_CHARS) -> list[str]:
    """Paragraphs joined into pieces of at most ``limit`` characters; a longer paragraph is cut at sentences."""
    out: list[str] = []
    piece = ""
    for para in paragraphs:
        for part in _split_long(para, limit):
            if piece and len(piece) + 2 + len(part) > limit:
                out.append(piece)
                piece = ""
            piece = f"{piece}\n\n{part}" if piece else part
    if piece:
        out.append(piece)
    return out


def _split_long(para: str, limit: int) -> Iterator[str]:
    if len(para) <= limit:
        yield para
        return
    piece = ""
    for sentence in re.split(r"(?<=[.!?])\s+", para):
        while len(sentence) > limit:  # no sentence end for a long way: cut at a space
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            if piece:
                yield piece
                piece = ""
            yield sentence[:cut].strip()
            sentence = sentence[cut:].strip()
        if piece and len(piece) + 1 + len(sentence) > limit:
            yield piece
            piece = ""
        piece = f"{piece} {sentence}".strip()
    if piece:
        yield piece


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) of a markdown note; the text before the first heading has heading ""."""
    sections: list[tuple[str, list[str]]] = []
    heading, lines = "", []

    def flush() -> None:
        paragraphs = _paragraphs("\n".join(lines))
        if paragraphs:
            sections.append((heading, paragraphs))

    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            flush()
            heading, lines = match.group(2).strip(), []
        else:
            lines.append(line)
    flush()
    return sections


class PersonaPassages:
    """Every passage of a (public) persona, in the persona's order, and lookups over them."""

    def __init__(self, persona: Persona) -> None:
        self.persona = persona
        built: list[Passage] = []
        self._add_facts(persona, built)  # the core passages come first: retrieval ranks what follows them
        self._add_text(SUMMARY_FILE, SUMMARY_FILE, _paragraphs(persona.summary), built)
        for name in sorted(persona.notes):
            self._add_note(f"{name}{NOTE_SUFFIX}", persona.notes[name], built)
        self._add_text(LINKEDIN_FILE, "LinkedIn profile", _paragraphs(persona.linkedin), built)
        self.all: tuple[Passage, ...] = tuple(dataclasses.replace(p, order=i) for i, p in enumerate(built))
        self.by_id: Mapping[str, Passage] = {p.id: p for p in self.all}
        self.core = tuple(p for p in self.all if p.core)
        self.knowledge = tuple(p for p in self.all if not p.core)
        self._index = None
        self._lock = threading.Lock()

    @property
    def index(self):
        """The BM25 index over every passage (built on first use)."""
        if self._index is None:
            from twin_server.grounding.retrieval import PassageIndex

            with self._lock:
                if self._index is None:
                    self._index = PassageIndex(self.all)
        return self._index

    @staticmethod
    def _add_facts(persona: Persona, out: list[Passage]) -> None:
        for key in persona.facts:
            text = render_facts({key: persona.facts[key]}) if key != "full_name" else f"- Name: {persona.full_name}"
            if text:
                out.append(Passage(f"{FACTS_FILE}#{key}", fact_label(key), text, FACTS_FILE, core=True))

    @staticmethod
    def _add_text(file: str, title: str, paragraphs: list[str], out: list[Passage]) -> None:
        for n, piece in enumerate(_pieces(paragraphs), start=1):
            suffix = "" if n == 1 else f":{n}"
            out.append(Passage(f"{file}{suffix}", title if n == 1 else f"{title} ({n})", piece, file))

    @staticmethod
    def _add_note(file: str, text: str, out: list[Passage]) -> None:
        used: dict[str, int] = {}
        for heading, paragraphs in _sections(text):
            base = f"{file}#{_slug(heading)}" if heading else file
            used[base] = used.get(base, 0) + 1
            if used[base] > 1:
                base = f"{base}-{used[base]}"
            title = f"{file} › {heading}" if heading else file
            for n, piece in enumerate(_pieces(paragraphs), start=1):
                ident, named = (base, title) if n == 1 else (f"{base}:{n}", f"{title} ({n})")
                out.append(Passage(ident, named, piece, file))

    def sources(self, ids: Iterable[str]) -> tuple[Source, ...]:
        """The sources of ``ids`` in the order given, once each; unknown ids are left out."""
        seen: set[str] = set()
        out: list[Source] = []
        for ident in ids:
            passage = self.by_id.get(ident)
            if passage is not None and ident not in seen:
                seen.add(ident)
                out.append(passage.source)
        return tuple(out)

    def attribute(self, text: str, file: str | None = None) -> Passage | None:
        """The passage ``text`` was taken or written from: the one (of ``file``, when given) sharing
        the most of its words, weighted by rarity; None when none shares any.

        For a model that rewrites passages in its own words (the offline model's "I'm based in
        Lisbon." comes from ``facts.json#location``) and must say which ones it used.
        """
        wanted = set(terms(text))
        index = self.index
        best: tuple[float, int] | None = None
        for position in sorted(index.holding(wanted)):  # the passages sharing a word; the others score nothing
            if file is not None and self.all[position].file != file:
                continue
            shared = wanted & index.terms_of(position)
            score = sum(sorted(map(index.idf, shared)))  # sorted: the same sum in any hash order, ties exact
            if best is None or score > best[0]:
                best = (score, position)
        return None if best is None else self.all[best[1]]


_by_id: dict[int, tuple[Persona, PersonaPassages]] = {}
_cache_lock = threading.Lock()
_CACHE_SIZE = 8


def persona_passages(persona: Persona) -> PersonaPassages:
    """The passages of ``persona``'s public part, built once per persona object (a few are kept)."""
    key = id(persona)
    entry = _by_id.get(key)
    if entry is not None and entry[0] is persona:
        return entry[1]
    built = PersonaPassages(public_persona(persona))
    with _cache_lock:
        entry = _by_id.get(key)
        if entry is not None and entry[0] is persona:
            return entry[1]
        while len(_by_id) >= _CACHE_SIZE:
            _by_id.pop(next(iter(_by_id)))
        _by_id[key] = (persona, built)
        _by_id[id(built.persona)] = (built.persona, built)  # a backend handed the public persona finds it too
    return built
