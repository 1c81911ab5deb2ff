"""The S3 persona source: the filesystem layout (``twin_server.persona``) under an S3 prefix.

``load()`` is called on every request, so it answers from memory. At most
once per TWIN_PERSONA_S3_TTL seconds it revalidates with one ListObjectsV2
call: the listing's ETags are compared with those of the cached files, and
only the files that changed are fetched again. An edited persona is picked up
within the TTL, without a restart. While one thread revalidates, the others
keep answering with the cached persona; and when S3 cannot be reached the
cached persona is served (and the failure logged) until it can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from twin_aws.clients import (
    addressing_style,
    error_code,
    join_key,
    make_client,
    operation_timeout,
    require_boto3,
    translated,
)
from twin_server import is_persona_file, parse_persona, Persona, Settings
from twin_server.errors import ConfigurationError, PersonaError, TransientError

__all__ = ["S3PersonaSource"]

log = logging.getLogger("twin_aws.persona")

DEFAULT_TTL = 30.0

Signature = tuple[tuple[str, str], ...]  # (file name, ETag), sorted


@dataclass(frozen=True)
class _State:
    """Replaced as a whole, so a reader never sees a mix of two revisions."""

    signature: Signature | None = None
    persona: Persona | None = None
    error: str | None = None
    checked_at: float = float("-inf")
    bodies: Mapping[str, tuple[str, bytes]] = field(default_factory=dict)  # name -> (etag, bytes)


class S3PersonaSource:
    """Reads a persona from ``s3://bucket/prefix/`` and re-reads only what changed."""

    def __init__(
        self, client: Any, bucket: str, prefix: str = "", ttl: float = DEFAULT_TTL,
        *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.bucket, self.prefix, self.ttl, self.clock = client, bucket, prefix, ttl, clock
        self.source = f"s3://{bucket}/{join_key(prefix, '')}"
        self._lock = threading.Lock()
        self._state = _State()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "S3PersonaSource":
        settings = Settings(config)
        require_boto3("persona source 's3'")
        bucket = settings.get_str("PERSONA_S3_BUCKET", "") or settings.get_str("S3_BUCKET", "")
        if not bucket or not bucket.strip():
            raise ConfigurationError(
                "persona source 's3' needs TWIN_PERSONA_S3_BUCKET (or TWIN_S3_BUCKET): the bucket holding the persona"
            )
        ttl = settings.get_float("PERSONA_S3_TTL", DEFAULT_TTL, minimum=0)
        client = make_client(
            "s3", operation_timeout(config, "persona"), what="persona source 's3'",
            s3_addressing_style=addressing_style(config),
        )
        return cls(client, bucket.strip(), settings.get_str("PERSONA_S3_PREFIX", "persona"), ttl)

    def __repr__(self) -> str:
        return f"S3PersonaSource({self.source!r})"

    def load(self) -> Persona:
        state = self._state
        if self.clock() - state.checked_at >= self.ttl:
            # Only the first load waits for the lock; later ones keep the cached persona meanwhile.
            if self._lock.acquire(blocking=state.signature is None):
                try:
                    state = self._state
                    if self.clock() - state.checked_at >= self.ttl:
                        state = self._state = self._revalidate(state)
                finally:
                    self._lock.release()
        if state.persona is None:
            # A fresh exception each time: re-raising one instance would grow its traceback.
            raise PersonaError(state.error or f"persona in {self.source} cannot be loaded")
        return state.persona

    def _revalidate(self, state: _State) -> _State:
        now = self.clock()
        try:
            listing = self._list()
            if tuple(sorted(listing.items())) == state.signature:
                return replace(state, checked_at=now)
            bodies = self._fetch_changed(listing, state.bodies)
        except TransientError as exc:
            if state.persona is None:
                raise
            log.warning("cannot revalidate the persona in %s (%s); serving the cached one", self.source, exc)
            return replace(state, checked_at=now)
        signature = tuple(sorted((name, etag) for name, (etag, _) in bodies.items()))
        try:
            persona = parse_persona({name: body for name, (_, body) in bodies.items()}, source=self.source)
        except PersonaError as exc:
            if state.error != str(exc):
                log.error("persona in %s cannot be loaded: %s", self.source, exc)
            return _State(signature, None, str(exc), now, bodies)
        if state.signature is not None:
            log.info("persona in %s changed; reloaded it", self.source)
        return _State(signature, persona, None, now, bodies)

    def _fetch_changed(
        self, listing: Mapping[str, str], cached: Mapping[str, tuple[str, bytes]]
    ) -> dict[str, tuple[str, bytes]]:
        """name -> (etag, bytes) of the listed files, fetching only those whose ETag changed."""
        bodies: dict[str, tuple[str, bytes]] = {}
        for name, etag in listing.items():
            held = cached.get(name)
            fetched = held if held is not None and held[0] == etag else self._get(name)
            if fetched is not None:  # None: removed since the listing
                bodies[name] = fetched
        return bodies

    def _list(self) -> dict[str, str]:
        """The layout's files directly under the prefix, with their ETags."""
        base = join_key(self.prefix, "")
        found: dict[str, str] = {}
        with translated(f"S3 ListObjectsV2 {self.source}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(base) :]
                    if is_persona_file(name):
                        found[name] = obj["ETag"]
        return found

    def _get(self, name: str) -> tuple[str, bytes] | None:
        key = join_key(self.prefix, name)
        with translated(f"S3 GetObject s3://{self.bucket}/{key}"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.ClientError as exc:
                if error_code(exc) in ("nosuchkey", "404"):
                    return None
                raise
            return response["ETag"], response["Body"].read()
