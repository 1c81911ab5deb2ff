"""The records stores keep: a message's line and a summary's JSON, byte for byte as they were always written."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin_server.errors import ValidationError
from twin_server.types import LINE_BREAK_ESCAPES, Message, Source, Summary


def line_of(message: Message) -> bytes:
    """A message's line as the release before wrote it: its dict through orjson, line breaks escaped."""
    line = orjson.dumps(message.to_dict())
    for code, escaped in LINE_BREAK_ESCAPES.items():
        line = line.replace(chr(code).encode(), escaped.encode())
    return line


def summary_json_of(summary: Summary) -> bytes:
    """A summary's JSON as the release before wrote it."""
    return json.dumps(summary.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class LaterDatetime(datetime):
    """A datetime subclass (as a clock double may give), which orjson does not write itself."""


STAMPS = [
    datetime(2026, 12, 2, 0, 22, 12, 232233, tzinfo=timezone.utc),
    datetime(2026, 12, 2, 0, 22, 12, tzinfo=timezone.utc),  # no microseconds: isoformat leaves them out
    datetime(2024, 3, 31, 2, 30, 0, 1, tzinfo=ZoneInfo("Europe/Lisbon")),
    datetime(2024, 1, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-8))),
    datetime(2024, 1, 1, 5, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(999, 1, 1, 0, 0, 0, 5, tzinfo=timezone.utc),
    LaterDatetime(2025, 6, 1, 12, 0, 0, 7, tzinfo=timezone.utc),
]


@pytest.mark.parametrize("stamp", STAMPS, ids=str)
@pytest.mark.parametrize("complete,sources", [(True, ()), (False, (Source("facts.json#skills", "Skills"),))])
def test_a_message_line_is_its_dict_as_it_was_always_written(stamp, complete, sources):
    message = Message("assistant", "I build boats.\u2028Ask me é \"why\" \\ \x00\x1f", stamp, complete, sources)
    assert message.to_json_line() == line_of(message)


@given(st.text(), st.datetimes(datetime(1900, 1, 1), datetime(9000, 1, 1), timezones=st.timezones()))
def test_any_message_line_is_its_dict_as_it_was_always_written(content, stamp):
    message = Message("user", content, stamp)
    try:
        expected = line_of(message)
    except orjson.JSONEncodeError:  # a lone surrogate
        with pytest.raises(ValidationError):
            message.to_json_line()
        return
    assert message.to_json_line() == expected


SUMMARY_TEXTS = [
    "- The visitor asked: What do you do?\n- I answered: I build boats.",
    "".join(map(chr, range(0x80))) + "é…\u2028\u2029\x85\ufeff😀",
    "",
]


@pytest.mark.parametrize("text", SUMMARY_TEXTS)
@pytest.mark.parametrize("messages", [0, 82, 2**63 - 1, 2**64, 2**70, -3, 1e-7, float("nan"), True])
def test_a_summary_is_written_as_it_always_was(text, messages):
    summary = Summary(text, STAMPS[0], messages, STAMPS[3])
    assert summary.to_json() == summary_json_of(summary)


@given(st.text())
def test_any_summary_text_is_written_as_it_always_was(text):
    summary = Summary(text, STAMPS[0], 12, STAMPS[1])
    try:
        expected = summary_json_of(summary)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            summary.to_json()
        return
    assert summary.to_json() == expected


def test_a_summary_with_a_lone_surrogate_fails_as_it_always_did():
    with pytest.raises(UnicodeEncodeError):
        Summary("half a pair \ud800", STAMPS[0], 1, STAMPS[0]).to_json()


def test_a_summary_whose_text_is_not_a_str_is_written_as_it_always_was():
    summary = Summary(1e-7, STAMPS[0], 1, STAMPS[0])  # type: ignore[arg-type]  (a summariser's bad answer)
    assert summary.to_json() == summary_json_of(summary)
