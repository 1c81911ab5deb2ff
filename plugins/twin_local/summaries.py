"""The filesystem store's rolling summaries: ``<root>/<session_id>.summary.ndjson`` beside the session.

Each new summary is appended as one JSON line, under the session's lock and
only while the session's own file exists (a summary made after the
conversation was erased never brings a piece of it back); the last complete
line is the summary. Appending, not writing a new file and renaming it over
the old one: ext4 flushes a file renamed over another (``auto_da_alloc``),
which made a summary cost 110 us of CPU against 15 us for an append. A line
torn by a crash has no newline and is passed over (the one before it stands);
the next append starts on a line of its own. Past ``COMPACT_BYTES`` the file
is written again with the newest line alone (a temporary file renamed over
it, once in many summaries). Erasing or expiring the session removes it, and
the ``<session_id>.summary.json`` an earlier release wrote (``erase``).

The file stays open between saves, like the session's (``twin_local.session_files``):
a save after this process's own last one needs no ``open`` and no torn-line check.
"""

from __future__ import annotations

import errno
import logging
import os

from twin_local.session_files import StripeFiles
from twin_server import Summary
from twin_server.errors import BackendUnavailable

__all__ = ["COMPACT_BYTES", "SUFFIX", "erase", "load", "save", "state"]

log = logging.getLogger("twin_local.storage")

SUFFIX = ".summary.ndjson"
#: Where the release before wrote a summary (one JSON document, replaced whole): erased with the session.
LEGACY_SUFFIX = ".summary.json"
#: Larger than this, the file is compacted to its newest line (a summary line is at most about 10 KB).
COMPACT_BYTES = 64 * 1024
#: How much of the file's end is read to find the last line: first a typical line's worth, then more than
#: the longest summary line.
_FIRST_READ = 4096
_TAIL_BYTES = 32 * 1024


def load(path: str, session_id: str) -> Summary | None:
    """The last complete line of the file; None without one that parses."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unavailable("read", exc) from exc
    try:
        size = os.fstat(fd).st_size  # of the file opened: a compaction may have renamed a new one over the path
        raw = _tail(fd, size, _FIRST_READ)
        if raw.count(b"\n") < 2 and len(raw) < size:  # the last line may begin before what was read
            raw = _tail(fd, size, _TAIL_BYTES)
    except OSError as exc:
        raise _unavailable("read", exc) from exc
    finally:
        os.close(fd)
    complete = raw[: raw.rfind(b"\n") + 1]  # a torn last line (no newline yet, or ever) is not read
    lines = complete.split(b"\n")
    if len(raw) < size:
        lines = lines[1:]  # the first may be the end of a longer line
    for line in reversed(lines):
        if not line.strip():
            continue
        try:
            return Summary.from_json(line)
        except ValueError:
            log.warning("ignoring a corrupt summary of session %s", session_id)
    return None


def _tail(fd: int, size: int, length: int) -> bytes:
    start = max(0, size - length)
    return os.pread(fd, size - start, start)


def save(path: str, session_file: str, summary: Summary, files: StripeFiles) -> tuple[int, int, int] | None:
    """Append ``summary`` (the caller holds the session's lock); None when the session is gone.

    The file stays open in ``files`` (the stripe's summary files). Returns its (inode, mtime, size)
    as left by this write: until another changes them, a load would read ``summary`` back.
    """
    if not os.path.exists(session_file):
        return None
    line = summary.to_json() + b"\n"
    try:
        file, st = files.writable(path, path)
        size = st.st_size
        if size + len(line) > COMPACT_BYTES:
            files.forget(path)  # the inode the new file is renamed over
            return _rewrite(path, line)
        # Not after this process's own last line (the file is as it left it): after a torn one, start a line.
        if size and size != file.written_to and os.pread(file.fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        _write_all(file.fd, line)
        written = os.fstat(file.fd)
        file.written_to = written.st_size
        return state(written)
    except OSError as exc:
        raise _unavailable("write", exc) from exc


def state(st: os.stat_result) -> tuple[int, int, int]:
    """What tells one version of a summary file from another: appending grows it, compacting renames a new one."""
    return st.st_ino, st.st_mtime_ns, st.st_size


def _rewrite(path: str, line: bytes) -> tuple[int, int, int]:
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, line)
            written = state(os.fstat(fd))  # a rename keeps the inode and the mtime
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError:
        remove(temporary)  # it may never have been created; the write's own error is the one raised
        raise
    return written


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.EIO, "write made no progress")
        view = view[written:]


def erase(path: str) -> None:
    """Remove the summary at ``path`` and the legacy one beside it (the session is being erased)."""
    remove(path)
    remove(path[: -len(SUFFIX)] + LEGACY_SUFFIX)


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return


def _unavailable(action: str, exc: OSError) -> BackendUnavailable:
    reason = errno.errorcode.get(exc.errno or 0, "OSError")
    return BackendUnavailable(f"filesystem store could not {action} a summary ({reason})")
