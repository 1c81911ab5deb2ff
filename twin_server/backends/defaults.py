"""The core's own backends, registered on every plugin manager like any plugin: the ``log`` notifier.

``log`` (the default of ``TWIN_NOTIFY``) writes one structured line per event
at INFO on the ``twin_server.owner`` logger. The line names the event, its id
and its session, never the visitor's words or address: ``twin-server inbox``
shows those.
"""

from __future__ import annotations

import logging
from typing import Any

from twin_server.events import Lead
from twin_server.hookspecs import hookimpl

__all__ = ["LogNotifier", "register_notifiers"]

log = logging.getLogger("twin_server.owner")


class LogNotifier:
    local = True  # a log line, written on this machine: it may be delivered in a request's thread (owner.delivery)

    def notify(self, event: Any, timeout: float | None = None) -> None:
        fields: dict[str, Any] = {"event": event.kind, "id": event.id, "session_id": event.session_id}
        if isinstance(event, Lead):
            fields["email_domain"] = event.email.rsplit("@", 1)[-1].lower()
            fields["named"] = bool(event.name)
            log.info("owner event: a lead in session %s (twin-server inbox shows it)", event.session_id,
                     extra={"owner_event": fields})
        else:
            fields["count"] = event.count
            log.info("owner event: an unanswered question in session %s (twin-server inbox shows it)",
                     event.session_id, extra={"owner_event": fields})


@hookimpl
def register_notifiers(register):
    register("log", lambda context: LogNotifier())
