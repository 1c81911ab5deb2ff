"""The records of erased sessions that ``DocumentEventStore`` keeps a while: ``erased/<session_id>.json``.

Deleting a session writes its record (when it was erased) before reading what
the session left; a process recording an event of the session reads the
record after storing the event, and takes back an event made before that time
(``DocumentEventStore.record_question`` says why that closes the race). A
record is needed only while a process may still store an event made before
the erasure, so deletions remove the records older than ``ERASURES_KEPT`` (a store looks through them once
every ``LOOK_EVERY`` at most: a sweep erasing many sessions in a row reads them once, not once each).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["ERASURES_KEPT", "LOOK_EVERY", "erased_at", "record_erasure", "remove_old_erasures"]

log = logging.getLogger("twin_server.events")

#: How long an erasure's record is kept: far beyond any turn's deadline and its events' storing.
ERASURES_KEPT = timedelta(hours=1)
LOOK_EVERY = timedelta(minutes=10)
FOLDER = "erased/"


def erased_at(documents: Any, session_id: str) -> datetime | None:
    """When ``session_id`` was last erased, as far as its record (still kept) says."""
    key = f"{FOLDER}{session_id}.json"
    found = documents.read(key)
    return None if found is None else _moment(found[0], key)


def record_erasure(documents: Any, session_id: str, at: datetime, tries: Iterable[int]) -> bool:
    """Write that ``session_id`` was erased ``at`` (a later time than the record's replaces it); False when the
    record kept changing for every one of ``tries``. Never absent meanwhile: a reader must not miss it."""
    key = f"{FOLDER}{session_id}.json"
    body = json.dumps({"session_id": session_id, "erased_at": at.isoformat()}).encode("utf-8")
    for _ in tries:
        found = documents.read(key)
        if found is not None:
            recorded = _moment(found[0], key)
            if recorded is not None and recorded >= at:
                return True
        if documents.write(key, body, version=None if found is None else found[1]):
            return True
    return False


def remove_old_erasures(documents: Any, now: datetime, *, keeping: str) -> None:
    """Remove the records older than ``ERASURES_KEPT`` (and unreadable ones), but ``keeping``'s."""
    for key in documents.keys(FOLDER):
        if key == f"{FOLDER}{keeping}.json" or not key.endswith(".json"):
            continue
        found = documents.read(key)
        if found is None:
            continue
        recorded = _moment(found[0], key)
        if recorded is None or now - recorded > ERASURES_KEPT:
            documents.remove(key)


def _moment(body: bytes, key: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(json.loads(body)["erased_at"])
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("skipping a corrupt erasure record %s (%s)", key, type(exc).__name__)
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
