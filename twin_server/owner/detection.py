"""Deterministic detection, for LLM backends without tools: leads and unanswered questions from plain text.

* A lead: each valid email address in the visitor's message (at most
  ``MAX_ADDRESSES``), with a name when the message gives one: "my name is jane
  doe", "call me Jane", or, capitalised, "I'm Jane Doe", "I am Jane Doe",
  "this is Jane Doe". The note is the message itself, cut to ``NOTES_MAX``.
* An unanswered question: the visitor's message, when the backend marked its
  reply as not covered (``Reply.covered`` is False), cut to ``QUESTION_MAX`` —
  unless the message left an address and asks nothing ("?").
"""

from __future__ import annotations

import dataclasses
import re

from twin_server.events import NAME_MAX, NOTES_MAX, QUESTION_MAX, find_emails

__all__ = ["MAX_ADDRESSES", "Contact", "contacts_in", "name_in", "question_from"]

MAX_ADDRESSES = 3

_WORD = r"[^\W\d_](?:[^\W\d_]|['’.-](?=[^\W\d_]))*"
_NAME = rf"(?P<name>{_WORD}(?:[ \t]+{_WORD}){{0,5}})"
#: Phrases that introduce a name whatever its case.
_STRONG = re.compile(rf"\b(?:my name is|my name's|name's|call me)[ \t]+{_NAME}", re.IGNORECASE)
#: Phrases that introduce a name only when it is capitalised ("I'm Jane", not "I'm interested").
_WEAK = re.compile(rf"\b(?:i am|i'm|i’m|this is)[ \t]+{_NAME}", re.IGNORECASE)
#: Words that end a name, or show the phrase did not introduce one.
_NOT_NAMES = frozenset("""
a an the and but or nor so yet from at with in on of for to by via as about here there just not very really
also only still currently now then today looking interested hiring recruiting happy glad sorry wondering curious
reaching writing contacting working based located sure new back trying hoping planning going from i me my mine your
you we our us he she they it is was be been am are hi hello hey thanks thank please dear mr mrs ms dr prof recruiter
engineer manager developer founder ceo cto student
""".split())
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


@dataclasses.dataclass(frozen=True)
class Contact:
    email: str
    name: str
    notes: str


def _cut(text: str, limit: int) -> str:
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def name_in(text: str) -> str:
    """The name the visitor gives in ``text``, or ""."""
    for pattern, capitalised in ((_STRONG, False), (_WEAK, True)):
        for match in pattern.finditer(text):
            words = []
            for word in match.group("name").split():
                if word.lower().strip("'’.-") in _NOT_NAMES or (capitalised and not word[0].isupper()):
                    break
                words.append(word)
            if words:
                name = " ".join(words[:4])
                if name.islower():
                    name = name.title()
                return name[:NAME_MAX]
    return ""


def contacts_in(text: str) -> list[Contact]:
    """The contacts a visitor's message leaves (none without an email address)."""
    if "@" not in text:  # most messages: the address pattern costs 30 times this test
        return []
    emails = find_emails(text)[:MAX_ADDRESSES]
    if not emails:
        return []
    name, notes = name_in(text), _cut(text, NOTES_MAX)
    return [Contact(email, name, notes) for email in emails]


def question_from(text: str) -> str:
    """The visitor's message as an unanswered question (cut to its limit)."""
    return _cut(text, QUESTION_MAX)
