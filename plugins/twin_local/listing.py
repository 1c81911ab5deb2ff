"""The filesystem store's extras for the owner: its conversations, last written first, and its events.

A conversation's last activity is its file's mtime. A cursor is the position
after a page's last entry (mtime in nanoseconds and session id), so pages stay
in order while sessions are written: a session written since moves to the
front and is not shown twice.
"""

from __future__ import annotations

import base64
import binascii
import os
from datetime import datetime, timezone
from pathlib import Path

from twin_server import DocumentEventStore, FileDocuments, SessionActivity, is_session_id
from twin_server.errors import BackendUnavailable, ValidationError

__all__ = ["EVENTS_DIR", "event_store", "list_sessions"]

SUFFIX = ".jsonl"
#: Beside the sessions' files in the data directory (no session file can be called that).
EVENTS_DIR = "owner-events"


def event_store(root: Path) -> DocumentEventStore:
    where = root / EVENTS_DIR
    return DocumentEventStore(FileDocuments(where), where=str(where))


def list_sessions(root: Path, limit: int, cursor: str | None = None) -> tuple[list[SessionActivity], str | None]:
    after = _decode(cursor) if cursor else None
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
    return listed, _encode(page[-1]) if len(entries) > limit else None


def _encode(position: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]}:{position[1]}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        stamp, _, session_id = text.partition(":")
        if not stamp.isdigit() or not is_session_id(session_id):
            raise ValueError(text)
        return int(stamp), session_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor is not one this server gave") from None
