"""The filesystem store's extras for the owner: its conversations, last written first, and its events.

A conversation's last activity is its file's mtime. A cursor is the position
after a page's last entry (mtime in nanoseconds and session id), so pages stay
in order while sessions are written: a session written since moves to the
front and is not shown twice.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from twin_server import DocumentEventStore, FileDocuments, is_session_id, listing_cursor, read_listing_cursor, SessionActivity
from twin_server.errors import BackendUnavailable

__all__ = ["EVENTS_DIR", "event_store", "list_sessions"]

SUFFIX = ".jsonl"
#: Beside the sessions' files in the data directory (no session file can be called that).
EVENTS_DIR = "owner-events"


def event_store(root: Path) -> DocumentEventStore:
    where = root / EVENTS_DIR
    return DocumentEventStore(FileDocuments(where), where=str(where))


def list_sessions(root: Path, limit: int, cursor: str | None = None) -> tuple[list[SessionActivity], str | None]:
    after = read_listing_cursor(cursor) if cursor else None
    entries: list[tuple[int, str]] = []
    try:
        with os.scandir(root) as found:
            for entry in found:
                session_id = entry.name[: -len(SUFFIX)]
                if entry.name.endswith(SUFFIX) and is_session_id(session_id):
                    try:
                        entries.append((entry.stat().st_mtime_ns, session_id))
                    except FileNotFoundError:  # deleted since the listing
                        continue
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        raise BackendUnavailable(f"filesystem store could not list the conversations ({type(exc).__name__})") from exc
    entries.sort(reverse=True)
    if after is not None:
        entries = [entry for entry in entries if entry < after]
    page = entries[:limit]
    listed = [SessionActivity(s, datetime.fromtimestamp(ns / 1e9, timezone.utc)) for ns, s in page]
    return listed, listing_cursor(*page[-1]) if len(entries) > limit else None
