"""Creating a file whole under its name: written unnamed (``O_TMPFILE``), then linked in through ``/proc``.

The name never shows the file before its data is all written, as a temporary
file linked in (or renamed) would ensure, without a temporary name to create
and unlink. Where the kernel (EISDIR: no ``O_TMPFILE``), the file system
(EOPNOTSUPP) or a missing ``/proc`` (ENOENT at the link) refuses it, callers
get ``NoUnnamedFiles`` and write a temporary file instead (``FileDocuments``).
"""

from __future__ import annotations

import errno
import os

__all__ = ["NoUnnamedFiles", "link_unnamed", "unnamed_files", "write_all"]

_UNNAMED = getattr(os, "O_TMPFILE", 0) and os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
#: What an O_TMPFILE open or its link through /proc fails with where either is not to be had.
_NO_UNNAMED = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV, errno.EPERM}
_FD_LINKS = "/proc/self/fd"


def unnamed_files() -> bool:
    """Whether this platform has ``O_TMPFILE`` at all (Linux); whether this folder takes it, the first try tells."""
    return _UNNAMED != 0


class NoUnnamedFiles(Exception):
    """The kernel, the file system or a missing /proc allows no O_TMPFILE create here."""


def link_unnamed(path: str, line: bytes) -> None:
    """``line`` in an unnamed file of ``path``'s folder, then linked in as ``path`` (FileExistsError if taken)."""
    try:
        fd = os.open(path.rpartition("/")[0], _UNNAMED, 0o600)
    except OSError as exc:
        if exc.errno in _NO_UNNAMED and not isinstance(exc, FileNotFoundError):  # that one is the folder: the caller
            raise NoUnnamedFiles() from exc  # makes it and tries again
        raise
    try:
        write_all(fd, line)
        try:
            # src_dir_fd makes it linkat(AT_SYMLINK_FOLLOW), the only way to link the file behind the fd
            # (link() links the /proc symlink itself: EXDEV); an absolute path ignores the fd given.
            os.link(f"{_FD_LINKS}/{fd}", path, src_dir_fd=fd)
        except OSError as exc:
            if exc.errno in _NO_UNNAMED:  # ENOENT here is /proc, not the folder: it was just opened
                raise NoUnnamedFiles() from exc
            raise
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
