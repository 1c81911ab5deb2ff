"""``twin-server sweep`` expires the owner events of conversations gone for as long as the TTL."""

import os
import time
from datetime import datetime, timedelta, timezone

from click.testing import CliRunner

from twin_local.listing import event_store
from twin_local.storage import FilesystemStore
from twin_server.cli import main
from twin_server.events import Lead, Question
from twin_server.types import Message

DAY = 86400


def test_the_sweep_erases_the_events_of_conversations_gone_as_long(tmp_path, monkeypatch):
    data = tmp_path / "data"
    store, events = FilesystemStore(data), event_store(data)
    old, now = datetime.now(timezone.utc) - timedelta(days=2), datetime.now(timezone.utc)
    for session_id in ("visitor-old1", "visitor-new1"):
        store.append(session_id, [Message("user", "hi"), Message("assistant", "hello")])
    stamp = time.time() - 2 * DAY
    os.utime(data / "visitor-old1.jsonl", (stamp, stamp))
    for session_id, at in (("visitor-old1", old), ("visitor-new1", old), ("stateless-old1", old),
                           ("stateless-new1", now)):
        events.record_lead(Lead.create(session_id, "jane@example.com", at=at))
    events.record_question(Question.create("visitor-old1", "Why?", at=old))
    events.record_question(Question.create("visitor-new1", "Why?", at=old))
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    monkeypatch.setenv("TWIN_SESSION_TTL", str(DAY))
    result = CliRunner().invoke(main, ["sweep"])
    assert result.exit_code == 0, result.output
    assert "erased 1 session(s)" in result.output and "owner events of 2 session(s)" in result.output
    assert sorted(lead.session_id for lead in events.leads()) == ["stateless-new1", "visitor-new1"]
    [question] = events.questions()
    assert question.session_ids == ("visitor-new1",)
