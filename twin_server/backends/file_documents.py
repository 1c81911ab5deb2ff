"""``Documents`` as files (``FileDocuments``): each a file of lines, the last complete line the document.

An update appends the new body as one line, under one ``flock`` after
checking the version against the last complete line, instead of writing a
new file and renaming it over the old one: ext4 flushes a file renamed over
another (``auto_da_alloc``), which made an update cost several times an
append. Readers take no lock. A reader sees a prefix of an append, and a
body never holds a newline (``_line_of`` refuses one), so the only newline it
can find past the old document is the one that completes the new body.

A crash can leave a torn last line (no newline): it is passed over, the line
before it stands, and the next update first cuts it off (``ftruncate``).
Cut, not followed by a newline written before the new line as the rolling
summaries do: a reader without the lock could see that newline alone and
take the torn line for a complete one.

A file with no newline at all is a whole document of an earlier release (one
JSON document, replaced whole), or an empty body: it reads as it is, and the
next update ends it with a newline in the same write as the new line. It can
be nothing else because a file only ever appears with its first line
complete (a create is written aside and linked in, ``FileDocuments``), so a
torn first line never exists to be mistaken for one.

Past ``COMPACT_BYTES`` an update writes the file again with the newest line
alone (a temporary file renamed over it, under the lock): once in many.

A list (``add_entry``, ``entries``: the event store's ``asked/`` markers) is
another kind of file, never read as a document: entries appended, each after
a newline, with no lock and no inode made per entry. A reader may see an
entry cut short (a crash, or an append in progress); the newline before the
next one keeps that one whole.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from twin_server.backends.unnamed_files import NoUnnamedFiles, link_unnamed, unnamed_files, write_all
from twin_server.errors import BackendUnavailable

__all__ = ["COMPACT_BYTES", "FileDocuments"]

_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
#: Larger than this, a document's file is written again with its newest line alone.
COMPACT_BYTES = 64 * 1024
#: How much of a file's end is read first: more than a typical document; a longer one is read whole.
_FIRST_READ = 4096


class FileDocuments:
    """``Documents`` as files under ``root`` (mode 0600), each a file of lines whose last complete line is the
    document (as the module says): an update appends a line under one ``flock`` after checking the version
    against it; a create is a ``link()`` (which refuses an existing name).

    A create writes its line to a file not yet named and links that in, so the name never shows a file
    without its first line complete, to a reader or after a crash: a file with no newline is then always a
    whole document of an earlier release, never a torn one, and a torn create could not be mended
    (the name is taken). The unnamed file is an ``O_TMPFILE`` linked in through ``/proc/self/fd`` (no
    name to create and unlink: a third less kernel work, and nothing left behind by a crash); where the
    kernel, the file system or a missing ``/proc`` refuses that, a temporary file beside the documents,
    linked in and unlinked. An empty body needs neither: the exclusive create alone writes it whole.

    ``root`` is created with the first write (mode 0700), so an app that never records an event leaves no trace.
    """

    local = True  # files on this machine's disk: no call waits on another machine

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()
        self._folder = str(self.root)  # paths joined as strings: a Path made per call cost about as much as a read
        self._lock_path = f"{self._folder}/.lock"
        self._unnamed = unnamed_files()  # creates write an O_TMPFILE and link it in, until the kernel refuses

    def __repr__(self) -> str:
        return f"FileDocuments({str(self.root)!r})"

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _unavailable("read", exc) from exc
        try:
            body = _last_line(fd).body
        except OSError as exc:
            raise _unavailable("read", exc) from exc
        finally:
            os.close(fd)
        return body, _version(body)

    def write(self, key: str, body: bytes, *, version: str | None) -> bool:
        path = self._path(key)
        line = _line_of(body)
        try:
            if version is None:  # a create needs no lock: link() and O_EXCL refuse a name that exists, atomically
                return self._create(path, body, line)
            with self._locked():
                try:
                    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
                except FileNotFoundError:
                    return False
                try:
                    last = _last_line(fd)
                    if _version(last.body) != version:
                        return False
                    if _needs_compaction(last, line):
                        self._replace(path, line)
                    else:
                        _append(fd, last, line)
                finally:
                    os.close(fd)
                return True
        except OSError as exc:
            raise _unavailable("write", exc) from exc

    def _create(self, path: str, body: bytes, line: bytes) -> bool:
        if not body:
            return self._in_folder(path, lambda: os.close(os.open(path, _CREATE, 0o600)))
        if self._unnamed:
            try:
                return self._in_folder(path, lambda: link_unnamed(path, line))
            except NoUnnamedFiles:
                self._unnamed = False  # this file system (or a /proc-less container): the named way from now on
        temporary = self._temporary(line)
        try:
            return self._in_folder(path, lambda: os.link(temporary, path))
        finally:
            os.unlink(temporary)

    def _replace(self, path: str, line: bytes) -> None:
        temporary = self._temporary(line)
        try:
            os.replace(temporary, path)
        except OSError:
            os.unlink(temporary)
            raise

    def _temporary(self, data: bytes) -> str:
        """``data`` in a new private file beside the documents (same file system, so it can be renamed)."""
        temporary = f"{self._folder}/.{uuid.uuid4().hex}.tmp"
        try:
            fd = os.open(temporary, _CREATE, 0o600)
        except FileNotFoundError:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(temporary, _CREATE, 0o600)
        try:
            write_all(fd, data)
        except OSError:
            os.unlink(temporary)  # a full disk (ENOSPC) leaves no hidden file behind, that nothing would remove
            raise
        finally:
            os.close(fd)
        return temporary

    def _in_folder(self, path: str, create: Callable[[], None]) -> bool:
        """``create`` the name ``path`` (making its folder on its first document); False when it exists."""
        for _ in range(2):
            try:
                create()
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:
                # The root first: one made as the parent of a folder would take the umask's mode, not 0700.
                self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        create()
        return True

    def add_entry(self, key: str, entry: bytes) -> None:
        """Add ``entry`` to the list at ``key`` (created when absent): one ``O_APPEND`` write of a newline
        and the entry, no lock (the kernel keeps each append whole and apart from the others)."""
        if b"\n" in entry:
            raise ValueError("a list entry must be one line: this one contains a newline")
        path, data = self._path(key), b"\n" + entry

        def append() -> None:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)

        try:
            self._in_folder(path, append)
        except OSError as exc:
            raise _unavailable("write", exc) from exc

    def entries(self, key: str) -> list[bytes]:
        """The entries of the list at ``key``, oldest first ([] when there is none). One torn by a crash
        reads cut short, and the entries after it stand apart (each starts a line): check what is read."""
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _unavailable("read", exc) from exc
        try:
            raw = os.pread(fd, os.fstat(fd).st_size, 0)
        except OSError as exc:
            raise _unavailable("read", exc) from exc
        finally:
            os.close(fd)
        return [entry for entry in raw.split(b"\n") if entry]

    def remove(self, key: str) -> bool:
        path = self._path(key)
        try:
            with self._locked():
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    return False
                return True
        except OSError as exc:
            raise _unavailable("delete", exc) from exc

    def keys(self, prefix: str) -> list[str]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(folder) if folder else self._folder
        found = []
        try:
            for where, _dirs, files in os.walk(base):
                relative = Path(where).relative_to(self.root).as_posix()
                lead = "" if relative == "." else relative + "/"
                found.extend(lead + name for name in files if not name.startswith("."))
        except OSError as exc:
            raise _unavailable("list", exc) from exc
        return sorted(key for key in found if key.startswith(prefix))

    def _path(self, key: str) -> str:
        if not _KEY.fullmatch(key) or ".." in key.split("/"):
            raise ValueError(f"not a document key: {key!r}")
        return f"{self._folder}/{key}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class _LastLine(NamedTuple):
    body: bytes  # the document
    end: int  # where its line ends (just past the newline); 0 when the file has no newline
    size: int  # of the file read, a torn line included


def _line_of(body: bytes) -> bytes:
    """``body`` as the line that stores it; a body with a newline would read back as two documents."""
    if b"\n" in body:
        raise ValueError("a document body must be one line (compact JSON): this one contains a newline")
    return body + b"\n"


def _last_line(fd: int) -> _LastLine:
    """The document in the file open at ``fd``: its last complete line, or all of it when it has no newline."""
    size = os.fstat(fd).st_size  # of the file opened: a compaction may have renamed a new one over the path
    start = max(0, size - _FIRST_READ)
    raw = os.pread(fd, size - start, start)
    end = raw.rfind(b"\n")
    if start and (end < 0 or raw.rfind(b"\n", 0, end) < 0):  # the line may begin before what was read
        start, raw = 0, os.pread(fd, size, 0)
        end = raw.rfind(b"\n")
    if end < 0:
        return _LastLine(raw, 0, len(raw))
    return _LastLine(raw[raw.rfind(b"\n", 0, end) + 1:end], start + end + 1, start + len(raw))


def _needs_compaction(last: _LastLine, line: bytes) -> bool:
    return last.size + len(line) > COMPACT_BYTES


def _append(fd: int, last: _LastLine, line: bytes) -> None:
    """Append ``line`` to the file open (``O_APPEND``, under the writers' lock) at ``fd``, read as ``last``."""
    if last.end == 0 and last.size:
        line = b"\n" + line  # a whole earlier-release document: ended here, so it stays the line before
    elif last.end < last.size:
        os.ftruncate(fd, last.end)  # a line torn by a crash
    write_all(fd, line)


def _version(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _unavailable(action: str, exc: OSError) -> BackendUnavailable:
    reason = errno.errorcode.get(exc.errno or 0, "OSError")
    return BackendUnavailable(f"the event store could not {action} an event ({reason})")
