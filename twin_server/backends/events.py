"""The owner's events kept as small JSON documents: one implementation of ``EventStore`` for any store
that can read, conditionally write, delete and list keyed documents.

A store plugin gives its conversation store an ``event_store()`` returning
``DocumentEventStore(its_documents)``, where ``its_documents`` has four
methods (``Documents``): the filesystem's is ``FileDocuments`` (``file_documents``), S3's
maps them onto GetObject / conditional PutObject / DeleteObject /
ListObjectsV2. The layout, under whatever root the documents have::

    leads/<lead id>.json                     one lead (a conditional create dedups it); the id starts
                                             with "<session_id>."
    questions/<question id>.json             one unanswered question, merged on a repeat (read, then write if unchanged)
    asked/<session_id>.<question id>         an empty marker: this session asked it (so deleting the session finds it)
    asked/<session_id>                       the same markers as one list of question ids, where the documents
                                             keep lists (``EntryLists``: files), instead of a document each
    erased/<session_id>.json                 when the session was last erased (kept ``ERASURES_KEPT``, an hour):
                                             an event of it made before then, stored after, takes itself back

Deleting a session reads both kinds of marker, so a folder written before the
lists (one marker a question) is erased as fully as one written after. It
writes the session's erasure record first (``erasures``), so that a process
storing an event of the session meanwhile, or later, does not keep it.

Every write that changes a document is conditional on the version read, and
retried on a conflict (``MAX_CONFLICTS`` times, after a jittered pause that
doubles each time, so writers racing for one document spread out instead of
colliding again in step), so processes and machines sharing the documents
never lose each other's asks or deliveries.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from twin_server.backends import erasures
from twin_server.backends.file_documents import FileDocuments
from twin_server.backends.retrying import _Wrapped
from twin_server.errors import BackendError
from twin_server.events import Lead, Question
from twin_server.retry import ConflictPauses
from twin_server.sessions import is_session_id
from twin_server.types import utcnow

__all__ = ["DocumentEventStore", "Documents", "EntryLists", "FileDocuments", "RetryingEvents"]

log = logging.getLogger("twin_server.events")

MAX_CONFLICTS = 20
FIRST_PAUSE, LONGEST_PAUSE = 0.002, 0.1  # seconds: the bounds of the pauses after a lost conditional write
_LEAD_ID = re.compile(r"([A-Za-z0-9_-]{8,128})\.([0-9a-f]{20})")
_QUESTION_ID = re.compile(r"[0-9a-f]{20}")


class Documents(Protocol):
    def read(self, key: str) -> tuple[bytes, str] | None:
        """(body, version) of the document, or None when there is none."""

    def write(self, key: str, body: bytes, *, version: str | None) -> bool:
        """Write only if the document is absent (``version`` None) or still at ``version``; False otherwise."""

    def remove(self, key: str) -> bool:
        """Delete the document; True when it was there."""

    def keys(self, prefix: str) -> list[str]:
        """Every document key starting with ``prefix`` (a folder, "leads/", or a part of a name, "leads/abc.")."""


class EntryLists(Protocol):
    """What documents may also keep (``FileDocuments`` does): lists appended to, for the ``asked/`` markers
    (one list a session instead of a document a question: on files, no inode made per question)."""

    def add_entry(self, key: str, entry: bytes) -> None:
        """Add ``entry`` (bytes without a newline) to the list at ``key``, creating it."""

    def entries(self, key: str) -> list[bytes]:
        """The list's entries ([] when there is none); one may be cut short by a crash: check them."""


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class DocumentEventStore:
    """An ``EventStore`` over ``Documents``."""

    def __init__(self, documents: Documents, *, where: str = "", clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> None:
        self.documents, self.clock = documents, clock
        self._erasures_looked_at: datetime | None = None
        self._lists: EntryLists | None = (
            documents if all(callable(getattr(documents, m, None)) for m in ("add_entry", "entries")) else None)
        self.where = where or repr(documents)
        self._pauses = ConflictPauses(FIRST_PAUSE, LONGEST_PAUSE, sleep=sleep, random=rng)

    def __repr__(self) -> str:
        return f"DocumentEventStore({self.where})"

    @property
    def local(self) -> bool:
        """As local as its documents (``EventStore.local``)."""
        return getattr(self.documents, "local", False) is True

    # -- writing ---------------------------------------------------------------

    def record_lead(self, lead: Lead) -> bool:
        key = _lead_key(lead.session_id, lead.id)
        if not self.documents.write(key, _dumps(lead.to_dict()), version=None):
            return False
        # As for a question (below): the delete lists the leads after writing its record.
        if self._erased_since(lead.session_id, lead.created_at):
            self.documents.remove(key)
            return False
        return True

    def record_question(self, question: Question) -> bool:
        # The marker (1) first: a crash between the two leaves a marker pointing at nothing, which is harmless.
        if self._lists is not None:
            self._lists.add_entry(f"asked/{question.session_id}", question.id.encode())
        else:
            self.documents.write(f"asked/{question.session_id}.{question.id}", b"", version=None)
        new = self._add_ask(question)  # (2)
        # (3) The erasure record, read after the ask is written. A delete writes it (a) before reading the markers
        # (b) and erasing their asks (c). When (3) finds no record, (3) came before (a), so (1) before (b) and (2)
        # before (c): the delete finds the marker and erases the ask. When (3) finds it, the ask may have been
        # written after (c) with no marker left to find it, so an ask made before the erasure takes itself back;
        # one made after it is a new conversation's, and stays. (The documents read what was written, from any
        # process: files, S3 and DynamoDB's consistent reads do.)
        if self._erased_since(question.session_id, question.last_asked):
            self._update(f"questions/{question.id}.json", _question,
                         lambda entry: entry.without_session(question.session_id))
            return False
        return new

    def _erased_since(self, session_id: str, moment: datetime) -> bool:
        erased = erasures.erased_at(self.documents, session_id)
        return erased is not None and moment <= erased

    def _add_ask(self, question: Question) -> bool:
        key = f"questions/{question.id}.json"
        for _ in self._pauses.tries(MAX_CONFLICTS):
            found = self.documents.read(key)
            if found is None:
                if self.documents.write(key, _dumps(question.to_dict()), version=None):
                    return True
                continue
            body, version = found
            merged = _question(body, key)
            merged = question if merged is None else merged.merged(question)
            if self.documents.write(key, _dumps(merged.to_dict()), version=version):
                return False
        raise _kept_changing(self.where, "a question's update")

    def set_delivery(self, kind: str, event_id: str, states: Mapping[str, str]) -> None:
        if kind == Lead.kind:
            match = _LEAD_ID.fullmatch(event_id)
            if match is None:
                return
            key, load = _lead_key(match.group(1), event_id), _lead
        else:
            if not _QUESTION_ID.fullmatch(event_id):
                return
            key, load = f"questions/{event_id}.json", _question
        self._update(key, load, lambda event: event.with_delivery(states))

    def delete_lead(self, lead_id: str) -> bool:
        match = _LEAD_ID.fullmatch(lead_id)
        if match is None:
            return False
        return self.documents.remove(_lead_key(match.group(1), lead_id))

    def delete_session(self, session_id: str) -> int:
        if not is_session_id(session_id):
            return 0
        now = self.clock()
        # Before anything of the session is read: see record_question.
        if not erasures.record_erasure(self.documents, session_id, now, self._pauses.tries(MAX_CONFLICTS)):
            raise _kept_changing(self.where, "an erasure's record")
        changed = sum(self.documents.remove(key) for key in self.documents.keys(f"leads/{session_id}."))
        markers = self.documents.keys(f"asked/{session_id}.")
        changed += self._erase_asks(session_id, [marker.rsplit(".", 1)[-1] for marker in markers])
        if self._lists is not None:
            # Another process may append to the list while the questions change: its entries are erased too
            # before the list goes (a marker a question was never removed unread; a list is removed whole).
            done: set[bytes] = set()
            while new := [e for e in self._lists.entries(f"asked/{session_id}") if e not in done]:
                done.update(new)
                changed += self._erase_asks(session_id, [entry.decode("ascii", "replace") for entry in new])
        # The markers last: erasing the session again after a crash finds what it had not done yet.
        for marker in markers:
            self.documents.remove(marker)
        if self._lists is not None:
            self.documents.remove(f"asked/{session_id}")
        if self._erasures_looked_at is None or now - self._erasures_looked_at >= erasures.LOOK_EVERY:
            self._erasures_looked_at = now
            erasures.remove_old_erasures(self.documents, now, keeping=session_id)
        return changed

    def _erase_asks(self, session_id: str, question_ids: list[str]) -> int:
        changed = 0
        for question_id in dict.fromkeys(question_ids):  # a list holds a question once per ask
            if _QUESTION_ID.fullmatch(question_id):  # which a torn entry, cut short, is not
                changed += self._update(f"questions/{question_id}.json", _question,
                                        lambda question: question.without_session(session_id))
        return changed

    def _update(self, key: str, load: Callable[[bytes, str], Any], change: Callable[[Any], Any]) -> bool:
        """Apply ``change`` to the document (None from it: erase the document); True when something changed."""
        for _ in self._pauses.tries(MAX_CONFLICTS):
            found = self.documents.read(key)
            if found is None:
                return False
            body, version = found
            event = load(body, key)
            if event is None:
                return False
            new = change(event)
            if new is event:
                return False
            if new is None:
                # Not conditional (no store here deletes conditionally): a repeat racing this erasure may vanish.
                return self.documents.remove(key)
            if self.documents.write(key, _dumps(new.to_dict()), version=version):
                return True
        raise _kept_changing(self.where, "an update")

    # -- reading ---------------------------------------------------------------

    def leads(self) -> list[Lead]:
        return [lead for lead in self._read_all("leads/", _lead) if lead is not None]

    def questions(self) -> list[Question]:
        return [question for question in self._read_all("questions/", _question) if question is not None]

    def _read_all(self, prefix: str, load: Callable[[bytes, str], Any]) -> list[Any]:
        keys = [key for key in self.documents.keys(prefix) if key.endswith(".json")]

        def read(key: str) -> Any:
            found = self.documents.read(key)
            return None if found is None else load(found[0], key)

        if len(keys) <= 1:
            return [read(key) for key in keys]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:  # S3: one GET each, side by side
            return list(pool.map(read, keys))


def _lead_key(session_id: str, lead_id: str) -> str:
    return f"leads/{lead_id}.json"


def _lead(body: bytes, key: str) -> Lead | None:
    try:
        return Lead.from_dict(json.loads(body))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("skipping a corrupt lead document %s (%s)", key, type(exc).__name__)
        return None


def _question(body: bytes, key: str) -> Question | None:
    try:
        return Question.from_dict(json.loads(body))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("skipping a corrupt question document %s (%s)", key, type(exc).__name__)
        return None


def _kept_changing(where: str, what: str) -> BackendError:
    # Not transient: the pauses were the retries; the core retrying the whole loop would only triple the wait.
    return BackendError(f"the event store {where} kept changing under {what} ({MAX_CONFLICTS} tries)")


class RetryingEvents(_Wrapped):
    """An ``EventStore`` behind the core's retry (the ``storage`` operation's policy and deadline)."""

    def record_lead(self, lead: Lead) -> bool:
        return bool(self.retrier.call(self.backend.record_lead, lead))

    def record_question(self, question: Question) -> bool:
        return bool(self.retrier.call(self.backend.record_question, question))

    def leads(self) -> list[Lead]:
        return list(self.retrier.call(self.backend.leads))

    def questions(self) -> list[Question]:
        return list(self.retrier.call(self.backend.questions))

    def delete_lead(self, lead_id: str) -> bool:
        return bool(self.retrier.call(self.backend.delete_lead, lead_id))

    def delete_session(self, session_id: str) -> int:
        return int(self.retrier.call(self.backend.delete_session, session_id) or 0)

    def set_delivery(self, kind: str, event_id: str, states: Mapping[str, str]) -> None:
        self.retrier.call(self.backend.set_delivery, kind, event_id, dict(states))
