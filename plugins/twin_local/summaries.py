"""The filesystem store's rolling summaries: ``<root>/<session_id>.summary.json`` beside the session.

Written whole to a temporary file and renamed over the old one, under the
session's lock, and only while the session's own file exists, so a summary
made after the conversation was erased never brings a piece of it back.
Erasing or expiring the session removes its summary.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from twin_server import Summary
from twin_server.errors import BackendUnavailable

__all__ = ["SUFFIX", "load", "remove", "save"]

log = logging.getLogger("twin_local.storage")

SUFFIX = ".summary.json"


def load(path: Path, session_id: str) -> Summary | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unavailable("read", exc) from exc
    try:
        return Summary.from_json(raw)
    except ValueError:
        log.warning("ignoring a corrupt summary of session %s", session_id)
        return None


def save(path: Path, session_file: Path, summary: Summary) -> bool:
    """Write ``summary`` (the caller holds the session's lock); False when the session is gone."""
    if not session_file.exists():
        return False
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, summary.to_json())
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass  # it may never have been created; the write's own error is the one to report
        raise _unavailable("write", exc) from exc
    return True


def remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return


def _unavailable(action: str, exc: OSError) -> BackendUnavailable:
    reason = errno.errorcode.get(exc.errno or 0, "OSError")
    return BackendUnavailable(f"filesystem store could not {action} a summary ({reason})")
