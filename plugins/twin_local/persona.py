"""The filesystem persona source: a directory laid out as ``twin_server.persona`` describes.

``load()`` is called on every request, so it is cheap: the directory is
revalidated at most once per ``TWIN_PERSONA_RELOAD_SECONDS`` (default 2; 0
revalidates on every request, for writing a persona). Revalidating is one
``os.scandir`` collecting (name, mtime_ns, size) of the layout's files; the
persona is parsed again only when that signature differs from the last one.
An edited persona is served within the interval, without a restart. While the
persona cannot be loaded, every request revalidates, so a fix is picked up at
once (a broken persona serves no chat, so there is nothing to save).
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from twin_server import FACTS_FILE, Persona, PersonaError, Settings, is_persona_file, parse_persona

log = logging.getLogger(__name__)

SETTING = "TWIN_PERSONA_DIR"
RELOAD_SETTING = "PERSONA_RELOAD_SECONDS"
DEFAULT_RELOAD_SECONDS = 2.0

Signature = tuple[tuple[str, int, int], ...]


def example_persona_dir() -> str:
    """The bundled example persona (a fictional person), used when PERSONA_DIR is unset."""
    return os.fspath(importlib.resources.files("twin_local") / "example_persona")


class FilesystemPersonaSource:
    """Reads a persona from ``directory`` and re-reads it only when its files change.

    ``reload_seconds``: the longest a loaded persona is served before the
    directory is looked at again (0: every call); ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        reload_seconds: float = DEFAULT_RELOAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if reload_seconds < 0:
            raise ValueError("reload_seconds must not be negative")
        self.directory = os.path.abspath(os.path.expanduser(os.fspath(directory)))
        self.reload_seconds, self.clock = reload_seconds, clock
        self._lock = threading.Lock()
        # (signature, persona, error message): replaced as a whole, so a reader never sees a mix.
        self._state: tuple[Signature | None, Persona | None, str | None] = (None, None, None)
        self._fresh_until = float("-inf")  # the clock reading before which the state is served unchecked

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "FilesystemPersonaSource":
        directory = config.get("PERSONA_DIR")
        if directory is None or not str(directory).strip():
            directory = example_persona_dir()
            log.info("PERSONA_DIR is not set; serving the bundled example persona from %s", directory)
        reload_seconds = Settings(config).get_float(RELOAD_SETTING, DEFAULT_RELOAD_SECONDS, minimum=0)
        return cls(directory, reload_seconds=reload_seconds)

    def __repr__(self) -> str:
        return f"FilesystemPersonaSource({self.directory!r})"

    def load(self) -> Persona:
        state = self._state
        if state[1] is None or self.clock() >= self._fresh_until:
            state = self._revalidate()
        persona, error = state[1], state[2]
        if persona is None:
            # A fresh exception each time: re-raising one instance would grow its traceback.
            raise PersonaError(error or f"persona in {self.directory} cannot be loaded")
        return persona

    def _revalidate(self) -> tuple[Signature | None, Persona | None, str | None]:
        now = self.clock()
        signature = self._scan()
        state = self._state
        if state[0] != signature:
            with self._lock:
                state = self._state
                if state[0] != signature:
                    state = self._state = self._reload(signature, state)
        self._fresh_until = now + self.reload_seconds
        return state

    def _scan(self) -> Signature:
        entries: list[tuple[str, int, int]] = []
        try:
            with os.scandir(self.directory) as it:
                for entry in it:
                    if not is_persona_file(entry.name):
                        continue
                    try:
                        if not entry.is_file():
                            continue
                        st = entry.stat()
                    except FileNotFoundError:
                        continue  # removed while we were looking
                    entries.append((entry.name, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            raise PersonaError(
                f"persona directory {self.directory} does not exist; set {SETTING} to a directory "
                f"holding {FACTS_FILE} (or unset it to serve the bundled example persona)"
            ) from None
        except NotADirectoryError:
            raise PersonaError(f"{SETTING} must name a directory, and {self.directory} is not one") from None
        except PermissionError:
            raise PersonaError(f"persona directory {self.directory} cannot be read (permission denied)") from None
        return tuple(sorted(entries))

    def _reload(self, signature: Signature, previous: tuple) -> tuple[Signature, Persona | None, str | None]:
        """Parse the persona; the outcome, good or bad, is remembered for this signature."""
        try:
            persona = parse_persona(self._read(signature), source=self.directory)
        except PersonaError as exc:
            if previous[2] != str(exc):
                log.error("persona in %s cannot be loaded: %s", self.directory, exc)
            return signature, None, str(exc)
        if previous[0] is not None:
            log.info("persona in %s changed; reloaded it", self.directory)
        return signature, persona, None

    def _read(self, signature: Signature) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for name, _mtime, _size in signature:
            path = os.path.join(self.directory, name)
            try:
                with open(path, "rb") as fh:
                    files[name] = fh.read()
            except FileNotFoundError:
                continue  # removed since the scan; the next scan sees a new signature
            except OSError as exc:
                raise PersonaError(f"{path} cannot be read: {exc.strerror or exc}") from None
        return files
