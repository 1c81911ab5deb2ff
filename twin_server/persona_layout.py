"""The persona layout, and the one parser every persona source shares.

A persona is a handful of files side by side (a directory, an S3 prefix, ...)::

    facts.json     required: {"full_name": "...", ...} (see FactsSchema)
    summary.txt    optional: who the person is, in their own words
    style.txt      optional: how they write
    linkedin.pdf   optional: a LinkedIn profile export (text read with pypdf, if installed)
    *.md           optional: knowledge notes, e.g. projects.md, faq.md

Private material stays in the files but never reaches the twin: ``facts.json``
may list keys under ``"private"`` (``{"private": ["salary"], "salary": ...}``),
and a note may start with front matter holding ``private: true``::

    ---
    private: true
    ---
    Notes for myself only.

``parse_persona`` leaves both out of the ``Persona`` it builds (and strips any
front matter from the notes it keeps); ``public_persona`` does the same for a
``Persona`` a third-party source built itself, so the core applies it to every
persona before a prompt is made.

A source fetches the files that ``is_persona_file`` accepts and hands their
bytes to ``parse_persona``, which validates them and builds the ``Persona``.
Everything wrong with them becomes a ``PersonaError`` with a message an
operator can act on.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from marshmallow import INCLUDE, Schema, fields
from marshmallow import ValidationError as SchemaError

from twin_server.errors import PersonaError
from twin_server.types import Persona

log = logging.getLogger(__name__)

FACTS_FILE = "facts.json"
SUMMARY_FILE = "summary.txt"
STYLE_FILE = "style.txt"
LINKEDIN_FILE = "linkedin.pdf"
NOTE_SUFFIX = ".md"

#: The fixed file names of the layout; knowledge notes are any other ``*.md``.
PERSONA_FILES: frozenset[str] = frozenset({FACTS_FILE, SUMMARY_FILE, STYLE_FILE, LINKEDIN_FILE})

__all__ = [
    "PERSONA_FILES",
    "PRIVATE_KEY",
    "FactsSchema",
    "is_persona_file",
    "select_persona_files",
    "parse_persona",
    "parse_facts",
    "public_persona",
    "split_front_matter",
]

#: The facts.json key listing the keys that stay private.
PRIVATE_KEY = "private"


def is_persona_file(name: str) -> bool:
    """True when ``name`` (relative to the persona directory) belongs to the layout."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return False
    return name in PERSONA_FILES or (name.endswith(NOTE_SUFFIX) and len(name) > len(NOTE_SUFFIX))


def select_persona_files(names: Iterable[str]) -> list[str]:
    """The layout's names among ``names``, sorted (what a source needs to fetch)."""
    return sorted({n for n in names if is_persona_file(n)})


# --- facts.json -------------------------------------------------------------


def _not_blank(value: str) -> None:
    if not value.strip():
        raise SchemaError("must be a non-empty string")


class _TextOrObject(fields.Field):
    """A string, or an object whose keys are kept (e.g. {"name": "French", "level": "fluent"})."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            return dict(value)
        raise SchemaError("must be a string or an object")


class _Years(fields.Field):
    """A year or a span: 2019, "2019", "2019-2023", "2021-present"."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise SchemaError("must be a string or a year")


def _text(**kwargs: Any) -> fields.String:
    return fields.String(allow_none=True, **kwargs)


def _texts() -> fields.List:
    return fields.List(fields.String(), allow_none=True)


class ExperienceSchema(Schema):
    class Meta:
        unknown = INCLUDE

    role = _text()
    company = _text()
    years = _Years(allow_none=True)
    description = _text()


class ProjectSchema(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True, validate=_not_blank)
    description = _text()
    url = _text()


class FactsSchema(Schema):
    """facts.json: ``full_name`` is required; every other key is optional and unknown keys are kept."""

    class Meta:
        unknown = INCLUDE

    full_name = fields.String(required=True, validate=_not_blank)
    headline = _text()
    current_role = _text()
    company = _text()
    location = _text()
    email = _text()
    website = _text()
    skills = _texts()
    languages = fields.List(_TextOrObject(), allow_none=True)
    experience = fields.List(fields.Nested(ExperienceSchema), allow_none=True)
    education = fields.List(_TextOrObject(), allow_none=True)
    projects = fields.List(fields.Nested(ProjectSchema), allow_none=True)
    interests = _texts()
    private = _texts()


_FACTS_SCHEMA = FactsSchema()


def _flatten(messages: Any, path: str = "") -> list[str]:
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key in sorted(messages, key=str):
            key_path = f"{path}.{key}" if path else str(key)
            out.extend(_flatten(messages[key], "" if key == "_schema" else key_path))
        return out
    if isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            return [f"{path}: {m}" if path else m for m in messages]
        return [line for m in messages for line in _flatten(m, path)]
    return [f"{path}: {messages}" if path else str(messages)]


def parse_facts(raw: bytes | str, where: str = FACTS_FILE) -> dict[str, Any]:
    """Validate facts.json; the result keeps the file's key order and its unknown keys."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        raise PersonaError(f"{where} is not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PersonaError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise PersonaError(f"{where} must hold a JSON object, not {type(data).__name__}")
    try:
        loaded = _FACTS_SCHEMA.load(data)
    except SchemaError as exc:
        problems = "; ".join(_flatten(exc.messages))
        raise PersonaError(f"{where} is invalid: {problems}") from None
    ordered = {key: loaded[key] for key in data if key in loaded}
    ordered["full_name"] = ordered["full_name"].strip()
    if "full_name" in (ordered.get(PRIVATE_KEY) or ()):
        raise PersonaError(f"{where} is invalid: private: full_name cannot be private (the twin needs a name)")
    return ordered


# --- private material ---------------------------------------------------------


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(front matter, body) of a note: ``key: value`` lines between two ``---`` lines at its top.

    Only flat ``key: value`` pairs are read (``true``/``false``/``yes``/``no`` become booleans); a
    note without front matter is returned whole with ``{}``.
    """
    stripped = text.lstrip("\ufeff")
    lines = stripped.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        return {}, text  # no closing line: not front matter
    meta: dict[str, Any] = {}
    for line in lines[1:end]:
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or line[:1].isspace():
            continue
        value = value.strip().strip("'\"")
        lowered = value.lower()
        meta[key.strip().lower()] = True if lowered in ("true", "yes") else False if lowered in ("false", "no") else value
    return meta, "\n".join(lines[end + 1:]).strip()


def _private_keys(facts: Mapping[str, Any]) -> set[str]:
    listed = facts.get(PRIVATE_KEY) or ()
    if isinstance(listed, str):
        listed = [listed]
    return {str(key) for key in listed} if isinstance(listed, (list, tuple, str)) else set()


def _public_facts(facts: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    private = _private_keys(facts)
    missing = sorted(private - set(facts))
    if missing:
        # A misspelt key would leave the real one public: say so.
        log.warning("%sfacts.json lists private keys it does not have: %s", where, ", ".join(missing))
    return {key: value for key, value in facts.items() if key != PRIVATE_KEY and key not in private}


def _public_notes(notes: Mapping[str, str]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, text in notes.items():
        meta, body = split_front_matter(text)
        if meta.get("private") is True or str(meta.get("private", "")).lower() in ("true", "yes"):
            continue
        if body.strip():
            kept[name] = body
    return kept


def public_persona(persona: Persona) -> Persona:
    """``persona`` without its private facts and notes; the same object when it has none."""
    facts = _public_facts(persona.facts) if PRIVATE_KEY in persona.facts else persona.facts
    notes = _public_notes(persona.notes)
    if facts is persona.facts and notes == dict(persona.notes):
        return persona
    return Persona(full_name=persona.full_name, facts=facts, summary=persona.summary, style=persona.style,
                   linkedin=persona.linkedin, notes=notes)


# --- the other files --------------------------------------------------------


def _decode(name: str, raw: bytes | str, where: str) -> str:
    if isinstance(raw, str):
        return raw.strip()
    try:
        return raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise PersonaError(f"{where}{name} is not UTF-8 text: {exc}") from None


def _pdf_text(raw: bytes, where: str) -> str:
    """The text of linkedin.pdf, or "" when pypdf (the ``pdf`` extra) is not installed."""
    try:
        from pypdf import PdfReader
    except ImportError:
        log.warning(
            "%s%s is present but pypdf is not installed, so it is skipped; "
            "install it with: pip install 'twin-server[pdf]'",
            where,
            LINKEDIN_FILE,
        )
        return ""
    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except Exception as exc:  # pypdf raises many kinds on a damaged file
        raise PersonaError(f"{where}{LINKEDIN_FILE} cannot be read as a PDF: {exc}") from None
    return "\n\n".join(p for p in pages if p)


def parse_persona(files: Mapping[str, bytes], source: str = "") -> Persona:
    """Build a Persona from the layout's files (names relative to the persona directory).

    ``source`` (e.g. "/srv/persona" or "s3://bucket/persona") prefixes error messages.
    Files outside the layout are ignored.
    """
    where = f"{source.rstrip('/')}/" if source else ""
    if FACTS_FILE not in files:
        raise PersonaError(f"{where}{FACTS_FILE} is missing; a persona needs at least facts.json with full_name")
    facts = parse_facts(files[FACTS_FILE], f"{where}{FACTS_FILE}")
    summary = _decode(SUMMARY_FILE, files[SUMMARY_FILE], where) if SUMMARY_FILE in files else ""
    style = _decode(STYLE_FILE, files[STYLE_FILE], where) if STYLE_FILE in files else ""
    linkedin = _pdf_text(bytes(files[LINKEDIN_FILE]), where) if LINKEDIN_FILE in files else ""
    notes: dict[str, str] = {}
    for name in sorted(files):
        if name.endswith(NOTE_SUFFIX) and is_persona_file(name):
            text = _decode(name, files[name], where)
            if text:
                notes[name[: -len(NOTE_SUFFIX)]] = text
    return Persona(
        full_name=facts["full_name"],
        facts=_public_facts(facts, where),
        summary=summary,
        style=style,
        linkedin=linkedin,
        notes=_public_notes(notes),
    )
