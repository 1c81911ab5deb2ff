"""``twin-server inbox``: what the twin recorded for its owner, in the terminal (or as JSON)."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

import click

from twin_server.app_state import EXTENSION_KEY
from twin_server.events import Lead, Question


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _undelivered(event: Lead | Question, names: list[str]) -> str:
    late = [n for n in names if event.delivery.get(n) in ("pending", "failed")]
    return f"  [not delivered: {', '.join(late)}]" if late else ""


def run(app: Any, *, as_json: bool, retry: bool, limit: int) -> None:
    owner = app.extensions[EXTENSION_KEY].owner
    redelivered = failed = None
    if retry:
        redelivered, failed = owner.redeliver()
    leads, questions = owner.leads(limit), owner.questions(limit)
    undelivered = len(owner.undelivered())
    if as_json:
        data: dict[str, Any] = {
            "leads": [lead.to_dict() for lead in leads],
            "questions": [{k: v for k, v in q.to_dict().items() if k not in ("asks", "others")} for q in questions],
            "undelivered": undelivered,
        }
        if retry:
            data.update(redelivered=redelivered, still_undelivered=failed)
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        names = owner.delivery.names
        click.echo(f"Leads ({len(leads)})")
        for lead in leads:
            who = f"{lead.name} <{lead.email}>" if lead.name else lead.email
            click.echo(f"  {_when(lead.created_at)}  {who}  (session {lead.session_id}){_undelivered(lead, names)}")
            if lead.notes:
                click.echo(f"      {' '.join(lead.notes.split())[:200]}")
        click.echo(f"Unanswered questions ({len(questions)})")
        for q in questions:
            click.echo(f"  {q.count:>3}×  last asked {_when(q.last_asked)}  {' '.join(q.question.split())[:200]}"
                       f"{_undelivered(q, names)}")
        if retry:
            click.echo(f"redelivered {redelivered} event(s); {failed} still undelivered")
        elif undelivered:
            click.echo(f"{undelivered} event(s) not delivered: run `twin-server inbox --retry`")
    if retry and failed:
        sys.exit(1)
