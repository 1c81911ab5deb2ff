"""The owner's endpoints, only when ``TWIN_OWNER_KEYS`` is set (404 otherwise).

Every request needs ``Authorization: Bearer <owner key>`` (compared in
constant time against every key; 401 problem without or with a wrong one)
and is counted against ``TWIN_OWNER_RATE_LIMIT`` per client address before
the key is even looked at (429), so keys cannot be guessed at speed. Answers
are JSON, never cached (``Cache-Control: no-store``)::

    GET    /owner/leads?limit=N            {"leads": [{id, session_id, email, name, notes, created_at, delivery}]}
    GET    /owner/unanswered?limit=N       {"questions": [{id, question, count, session_ids, first_asked, last_asked}]}
    GET    /owner/conversations?limit=N&cursor=C&messages=M
                                           {"conversations": [{session_id, messages, last_activity}], "next_cursor"}
    DELETE /owner/leads/<id>               204, or 404
    GET    /owner                          the inbox page (plain HTML, CSS and JS; asks for the key,
                                           keeps it for the tab only); the only one open without a key

Lists are newest first; ``limit`` is 1 to 1000 (default 100; 20 conversations),
``messages`` the last messages shown of each conversation (default 50).
"""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import timezone
from typing import Any

import limits as limits_lib
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import Unauthorized

from twin_server.app_state import twin
from twin_server.errors import BackendUnavailable, ConfigurationError, LimitExceeded, NotFound, ValidationError
from twin_server.events import SessionActivity
from twin_server.http.auth import KeyRing

__all__ = ["bp", "install"]

EXTENSION_KEY = "twin_owner"
MAX_LIMIT = 1000
MAX_MESSAGES = 1000

bp = Blueprint("twin_owner", __name__, url_prefix="/owner")


@dataclasses.dataclass(frozen=True)
class OwnerAccess:
    keys: KeyRing
    limiter: FixedWindowRateLimiter | None
    items: tuple[limits_lib.RateLimitItem, ...]


def install(app: Flask, keys: KeyRing, items: list[limits_lib.RateLimitItem]) -> None:
    limiter = None
    if items:
        uri = str(app.config.get("RATE_LIMIT_STORAGE") or "memory://")
        try:
            limiter = FixedWindowRateLimiter(storage_from_string(uri, wrap_exceptions=True))
        except (limits_lib.errors.ConfigurationError, ValueError, OSError) as exc:
            raise ConfigurationError(f"TWIN_RATE_LIMIT_STORAGE {uri!r} cannot be used: {exc}") from None
    app.extensions[EXTENSION_KEY] = OwnerAccess(keys, limiter, tuple(items))
    app.register_blueprint(bp)


PAGE_ENDPOINT = "twin_owner.page"
#: The chat page's policy, without frames: nobody may show the owner's inbox inside their page.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@bp.get("")
def page() -> Response:
    response = current_app.send_static_file("owner.html")
    response.headers.update({"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer",
                             "X-Content-Type-Options": "nosniff"})
    return response


@bp.before_request
def guard() -> None:
    access: OwnerAccess = current_app.extensions[EXTENSION_KEY]
    if access.limiter is not None:
        _count(access)
    if request.endpoint == PAGE_ENDPOINT:
        return  # the page holds no data: it asks for the key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("An owner key is required: send it as 'Authorization: Bearer <key>'.")
    if not access.keys.matches(token.strip(), twin().backends.secrets.get):
        raise Unauthorized("The owner key is not valid.")


def _count(access: OwnerAccess) -> None:
    client = request.remote_addr or "unknown"
    try:
        for item in access.items:
            if not access.limiter.hit(item, "owner", client):
                reset = access.limiter.get_window_stats(item, "owner", client).reset_time
                wait = max(1.0, reset - time.time())
                raise LimitExceeded(f"Too many owner requests ({item}); try again in {math.ceil(wait)} s.",
                                    retry_after=wait)
    except StorageError as exc:
        raise BackendUnavailable("the rate-limit storage did not answer") from exc


@bp.after_request
def private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _number(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        error = ValidationError(f"{name} must be a whole number from 1 to {maximum}.")
        error.messages = {name: [f"Must be a whole number from 1 to {maximum}."]}
        raise error
    return int(raw)


def _public(record: dict[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in drop}


@bp.get("/leads")
def leads() -> Response:
    found = twin().owner.leads(_number("limit", 100, MAX_LIMIT))
    return jsonify(leads=[lead.to_dict() for lead in found])


@bp.get("/unanswered")
def unanswered() -> Response:
    found = twin().owner.questions(_number("limit", 100, MAX_LIMIT))
    return jsonify(questions=[_public(q.to_dict(), "asks", "others", "delivery") for q in found])


@bp.delete("/leads/<lead_id>")
def delete_lead(lead_id: str) -> Response:
    if not twin().owner.delete_lead(lead_id):
        raise NotFound("There is no such lead.")
    return Response(status=204)


@bp.get("/conversations")
def conversations() -> Response:
    state = twin()
    limit = _number("limit", 20, MAX_LIMIT)
    shown = _number("messages", 50, MAX_MESSAGES)
    cursor = request.args.get("cursor") or None
    storage = state.backends.storage
    listing = getattr(storage.backend, "sessions", None)
    if callable(listing):
        page, next_cursor = storage.retrier.call(listing, limit, cursor)
    else:
        page, next_cursor = state.owner.sessions_with_events(limit, cursor)
    listed = []
    for activity in page:
        activity: SessionActivity
        messages = storage.load(activity.session_id, shown)
        stamp = activity.last_activity.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        listed.append({"session_id": activity.session_id, "messages": [m.to_dict() for m in messages],
                       "last_activity": stamp})
    return jsonify(conversations=listed, next_cursor=next_cursor)
