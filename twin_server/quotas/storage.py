"""Where the limits keep their counters: the setting, else one table the workers of a gunicorn share.

``TWIN_RATE_LIMIT_STORAGE`` names the storage. Unset, it is ``memory://``
(this process alone), except in a gunicorn process: gunicorn runs several
workers, each with its own memory, and per-process counters would multiply
the rate limit, the session caps and the daily budget by the number of
workers (``gunicorn -w 4 wsgi:app`` spent a daily budget of 10 forty times).
There the counters go to a shm table (``limits_shm``) that every worker of
that gunicorn opens, and a WARNING says so::

    $TMPDIR/twin-server-<uid>/limits-<gunicorn master's pid>.shm

A gunicorn process is one whose environment has ``SERVER_SOFTWARE=gunicorn/…``
(the master sets it before it loads the app, and its workers inherit it). The
directory belongs to this user alone (made with mode 700, refused otherwise);
the files of masters that have exited are removed there. ``gunicorn.conf.py``
sets the storage itself, in its own run directory, so this is the fallback for
running gunicorn without it. An explicit ``memory://`` under gunicorn is
obeyed, with a WARNING that every worker counts for itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import limits as limits_lib
from limits.storage import Storage, storage_from_string

from twin_server.quotas import shm_storage as limits_shm
from twin_server.quotas import sqlite_storage as limits_sqlite  # noqa: F401  (register the shm:// and sqlite:// storage schemes)
from twin_server.errors import ConfigurationError

__all__ = ["gunicorn_master", "open_storage", "storage_uri"]

PER_PROCESS = "memory://"


def gunicorn_master() -> int | None:
    """The pid of the gunicorn master this process belongs to; None outside gunicorn."""
    if not os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        return None
    # A worker installs its signal handlers before it loads the app; a master loading it
    # for --preload has not installed its own yet, and is itself the master. Not yet installed is
    # the default or ignored (a supervisor or shell may start gunicorn with SIGQUIT ignored).
    if not callable(signal.getsignal(signal.SIGQUIT)):
        return os.getpid()
    return os.getppid()


def _private_directory() -> Path:
    """``$TMPDIR/twin-server-<uid>``, made if missing; refused unless it is this user's alone."""
    path = Path(tempfile.gettempdir()) / f"twin-server-{os.getuid()}"
    with contextlib.suppress(FileExistsError):  # made before, or by another worker meanwhile: checked below
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigurationError(
            f"{path} must be a directory of this user's alone (mode 700) to hold gunicorn's shared counters; "
            "fix it, or set TWIN_RATE_LIMIT_STORAGE"
        )
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(directory: Path, keep: int) -> None:
    """The tables of gunicorn masters that have exited: nobody counts in them any more."""
    for table in directory.glob("limits-*.shm"):
        pid = table.stem.partition("-")[2]
        if pid.isdigit() and int(pid) != keep and not _alive(int(pid)):
            table.unlink(missing_ok=True)


def storage_uri(config: Mapping[str, Any], *, counters_needed: bool = True) -> tuple[str, str | None]:
    """The storage URI the limits use, and a warning for the log (None when there is nothing to say)."""
    uri = str(config.get("RATE_LIMIT_STORAGE") or "").strip()
    master = gunicorn_master()
    if uri:
        if master is not None and uri == PER_PROCESS and counters_needed:
            return uri, ("TWIN_RATE_LIMIT_STORAGE=memory:// under gunicorn: every worker counts for itself, so the "
                         "rate limit, the session caps and the daily budget allow their amount once per worker")
        return uri, None
    if master is None or not counters_needed:
        return PER_PROCESS, None
    try:
        directory = _private_directory()
        _remove_stale(directory, keep=master)
    except OSError as exc:
        raise ConfigurationError(f"gunicorn's shared counters cannot be kept in {tempfile.gettempdir()}: {exc}; "
                                 "set TWIN_RATE_LIMIT_STORAGE") from None
    uri = f"shm:///{directory}/limits-{master}.shm"
    return uri, (f"TWIN_RATE_LIMIT_STORAGE is not set under gunicorn: the rate limit, the session caps and the "
                 f"daily budget are counted in {uri}, shared by the workers of this gunicorn (per-process memory "
                 "would allow each amount once per worker); set it, or run gunicorn with gunicorn.conf.py")


def open_storage(config: Mapping[str, Any], *, counters_needed: bool = True) -> tuple[Storage, str | None]:
    """The counter storage (and the warning of ``storage_uri``); a ConfigurationError says why it cannot be used."""
    uri, warning = storage_uri(config, counters_needed=counters_needed)
    try:
        return storage_from_string(uri, wrap_exceptions=True), warning
    except (limits_lib.errors.ConfigurationError, ValueError, OSError) as exc:
        hint = " (install twin-server[redis])" if "prerequisite" in str(exc) and uri.startswith(("redis", "valkey")) else ""
        raise ConfigurationError(f"TWIN_RATE_LIMIT_STORAGE {uri!r} cannot be used: {exc}{hint}") from None
