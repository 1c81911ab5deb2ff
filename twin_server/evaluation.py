"""Answer quality, measured: a set of chat cases run through any ``ask`` and scored.

A case file holds one JSON object per line::

    {"question": "Who do you work for?", "category": "fact", "expect_any": ["Tidewater"]}

``question`` and ``category`` are required; ``history`` (earlier user
messages, replayed first in the same session), ``expect_all`` / ``expect_any``
(case-insensitive substrings), ``forbid`` (substrings that must not appear)
and ``unanswered`` (whether the session must record an unanswered question)
are optional, and so is a free-text ``note``. A case passes when every condition it gives holds.

The runner knows nothing of HTTP or of any backend: ``ask(session_id, text)``
runs one chat turn and returns the reply, and ``unanswered_recorded(session_id)``
says whether that session recorded an unanswered question. Each case gets a
fresh session id.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["Case", "CaseResult", "JUDGE_INSTRUCTIONS", "Report", "judge_by_reply", "load_cases", "run_cases", "verdict_of"]

Ask = Callable[[str, str], str]
Unanswered = Callable[[str], bool]
Progress = Callable[[int, int], None]
#: ``judge(question, response)`` → None when the reply is faithful, else why it is not.
Judge = Callable[[str, str], "str | None"]

_FIELDS = frozenset({"question", "category", "history", "expect_all", "expect_any", "forbid", "unanswered", "note"})


@dataclasses.dataclass(frozen=True)
class Case:
    """One question to ask, with the conditions its reply must meet."""

    question: str
    category: str
    history: tuple[str, ...] = ()
    expect_all: tuple[str, ...] = ()
    expect_any: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    unanswered: bool | None = None
    line: int = 0


@dataclasses.dataclass(frozen=True)
class CaseResult:
    case: Case
    passed: bool
    why: str
    response: str

    def to_json(self) -> dict[str, Any]:
        return {"question": self.case.question, "category": self.case.category, "passed": self.passed,
                "why": self.why, "response": self.response}


@dataclasses.dataclass(frozen=True)
class Report:
    cases: tuple[CaseResult, ...]

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.cases)

    @property
    def score(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def by_category(self) -> dict[str, dict[str, int]]:
        """{category: {"total", "passed"}}, categories in the order they first appear."""
        out: dict[str, dict[str, int]] = {}
        for result in self.cases:
            entry = out.setdefault(result.case.category, {"total": 0, "passed": 0})
            entry["total"] += 1
            entry["passed"] += result.passed
        return out

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``json.dumps`` it)."""
        return {"total": self.total, "passed": self.passed, "score": round(self.score, 4),
                "by_category": self.by_category, "cases": [r.to_json() for r in self.cases]}

    def to_table(self) -> str:
        """A text table by category, then every failing case with its reply."""
        rows = [(cat, c["passed"], c["total"]) for cat, c in self.by_category.items()]
        rows.append(("total", self.passed, self.total))
        width = max(len("category"), *(len(r[0]) for r in rows))
        lines = [f"{'category':<{width}}  passed  total  score"]
        for cat, passed, total in rows:
            if cat == "total":
                lines.append("-" * len(lines[0]))
            lines.append(f"{cat:<{width}}  {passed:>6}  {total:>5}  {passed / total if total else 0:>5.0%}")
        failing = [r for r in self.cases if not r.passed]
        if failing:
            lines += ["", f"{len(failing)} failing:"]
        for result in failing:
            where = f" (line {result.case.line})" if result.case.line else ""
            lines += ["", f"[{result.case.category}] {result.case.question}{where}", f"  why: {result.why}"]
            lines += [f"  reply: {line}" if i == 0 else f"         {line}"
                      for i, line in enumerate(result.response.splitlines() or [""])]
        return "\n".join(lines) + "\n"


def _strings(record: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = record.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where}: {key!r} must be a list of non-empty strings")
    return tuple(value)


def parse_case(record: Any, where: str = "case", line: int = 0) -> Case:
    """A Case from one decoded JSON object; ValueError (prefixed with ``where``) when it is not one."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a case must be a JSON object")
    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
    for key in ("question", "category"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ValueError(f"{where}: {key!r} must be a non-empty string")
    unanswered = record.get("unanswered")
    if unanswered is not None and not isinstance(unanswered, bool):
        raise ValueError(f"{where}: 'unanswered' must be true or false")
    return Case(
        question=record["question"],
        category=record["category"].strip(),
        history=_strings(record, "history", where),
        expect_all=_strings(record, "expect_all", where),
        expect_any=_strings(record, "expect_any", where),
        forbid=_strings(record, "forbid", where),
        unanswered=unanswered,
        line=line,
    )


def load_cases(path: str | os.PathLike[str]) -> list[Case]:
    """Every case of a JSON Lines file; blank lines are skipped, a bad line is a ValueError naming it."""
    cases: list[Case] = []
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            where = f"{os.fspath(path)}, line {number}"
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
            cases.append(parse_case(record, where, number))
    if not cases:
        raise ValueError(f"{os.fspath(path)} holds no cases")
    return cases


def check(case: Case, response: str, unanswered: bool | None) -> list[str]:
    """Why ``response`` fails ``case`` (empty when it passes); ``unanswered`` None means it cannot be known."""
    folded = response.casefold()
    why: list[str] = []
    missing = [s for s in case.expect_all if s.casefold() not in folded]
    if missing:
        why.append("missing " + ", ".join(map(repr, missing)))
    if case.expect_any and not any(s.casefold() in folded for s in case.expect_any):
        why.append("none of " + ", ".join(map(repr, case.expect_any)))
    found = [s for s in case.forbid if s.casefold() in folded]
    if found:
        why.append("forbidden " + ", ".join(map(repr, found)))
    if case.unanswered is not None:
        if unanswered is None:
            why.append("unanswered cannot be checked: no record of unanswered questions was given")
        elif unanswered != case.unanswered:
            why.append("recorded an unanswered question" if unanswered else "no unanswered question recorded")
    return why


def run_case(
    case: Case,
    ask: Ask,
    unanswered_recorded: Unanswered | None = None,
    *,
    judge: Judge | None = None,
    finished: Callable[[str], object] | None = None,
) -> CaseResult:
    """One case in a fresh session; ``finished(session_id)`` runs afterwards, whatever happened (clean-up)."""
    session_id = f"eval-{uuid.uuid4().hex}"
    try:
        for text in case.history:
            ask(session_id, text)
        response = ask(session_id, case.question)
        recorded = None
        if case.unanswered is not None and unanswered_recorded is not None:
            recorded = bool(unanswered_recorded(session_id))
        why = check(case, response, recorded)
        if judge is not None:
            verdict = judge(case.question, response)
            if verdict:
                why.append(f"judged unfaithful: {verdict}")
    except Exception as exc:  # a failed turn fails its case, reported with the error, and the run goes on
        return CaseResult(case, False, f"error: {type(exc).__name__}: {exc}", "")
    finally:
        if finished is not None:
            finished(session_id)
    return CaseResult(case, not why, "; ".join(why), response)


def run_cases(
    cases: Iterable[Case],
    ask: Ask,
    *,
    unanswered_recorded: Unanswered | None = None,
    progress: Progress | None = None,
    judge: Judge | None = None,
    finished: Callable[[str], object] | None = None,
) -> Report:
    """Run every case, each in a fresh session, and score them; ``progress(done, total)`` after each."""
    cases = list(cases)
    results: list[CaseResult] = []
    for case in cases:
        results.append(run_case(case, ask, unanswered_recorded, judge=judge, finished=finished))
        if progress is not None:
            progress(len(results), len(cases))
    return Report(tuple(results))


JUDGE_INSTRUCTIONS = (
    "You grade a digital twin's reply for faithfulness. The twin may state only what the persona material "
    "above says. Answer with one line: 'FAITHFUL' when every claim in the reply is supported by that material "
    "(an honest 'I haven't written about that' or a polite refusal is faithful), else 'UNFAITHFUL: ' and the "
    "first unsupported claim."
)


def verdict_of(text: str) -> str | None:
    """The judge model's one line → None (faithful) or the reason; anything unclear counts as unfaithful."""
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    if line.upper().startswith("FAITHFUL"):
        return None
    if line.upper().startswith("UNFAITHFUL"):
        return line.split(":", 1)[1].strip() if ":" in line else "no reason given"
    return f"the judge's answer was not a verdict: {line[:120]!r}"


def judge_by_reply(ask: Ask, is_unanswered: Callable[[str], bool]) -> tuple[Ask, Unanswered]:
    """An ``ask`` that remembers its replies, and an ``unanswered_recorded`` that judges them.

    For a backend with no record of unanswered questions: a session counts as
    having recorded one when any of its replies satisfies ``is_unanswered``
    (for the offline model, its honest "not covered" answer).
    """
    replies: dict[str, list[str]] = {}

    def remembering(session_id: str, text: str) -> str:
        reply = ask(session_id, text)
        replies.setdefault(session_id, []).append(reply)
        return reply

    def recorded(session_id: str) -> bool:
        return any(is_unanswered(r) for r in replies.pop(session_id, ()))

    return remembering, recorded
