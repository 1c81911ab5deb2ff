"""The eval runner: cases from JSON Lines, run through a scripted ``ask``, scored and reported."""

from __future__ import annotations

import json

import pytest

from twin_server.evaluation import Case, judge_by_reply, load_cases, run_cases

REPLIES = {
    "Where do you live?": "I'm based in Lisbon.",
    "What's your salary?": "I haven't written about that.",
    "Where is that?": "Lisbon is in Portugal.",
    "What's 2+2?": "4, and my skills are Python and Rust.",
}


class Scripted:
    """An ``ask`` that answers from REPLIES and remembers every call, in order."""

    def __init__(self, replies=REPLIES):
        self.replies = replies
        self.calls: list[tuple[str, str]] = []

    def __call__(self, session_id: str, text: str) -> str:
        self.calls.append((session_id, text))
        return self.replies[text]


def write(tmp_path, *lines):
    path = tmp_path / "cases.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_loads_every_field_and_skips_blank_lines(tmp_path):
    path = write(
        tmp_path,
        {"question": "Where is that?", "category": "multi-turn", "history": ["Where do you live?"],
         "expect_all": ["Lisbon"], "expect_any": ["Portugal", "Spain"], "forbid": ["Madrid"], "unanswered": False,
         "note": "a follow-up"},
        "",
        {"question": "Hi", "category": "smalltalk", "expect_all": "Hello"},
    )
    first, second = load_cases(path)
    assert first == Case("Where is that?", "multi-turn", ("Where do you live?",), ("Lisbon",), ("Portugal", "Spain"),
                         ("Madrid",), False, line=1)
    assert second == Case("Hi", "smalltalk", expect_all=("Hello",), line=3)


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"question": "Hi", "category": "smalltalk"', "line 2: not JSON"),
        ('["Hi"]', "line 2: a case must be a JSON object"),
        ('{"category": "fact"}', "line 2: 'question' must be a non-empty string"),
        ('{"question": "Hi"}', "line 2: 'category' must be a non-empty string"),
        ('{"question": "Hi", "category": "x", "expect": ["a"]}', "line 2: unknown field 'expect'"),
        ('{"question": "Hi", "category": "x", "forbid": [1]}', "line 2: 'forbid' must be a list of non-empty strings"),
        ('{"question": "Hi", "category": "x", "history": [""]}', "line 2: 'history' must be a list"),
        ('{"question": "Hi", "category": "x", "unanswered": "yes"}', "line 2: 'unanswered' must be true or false"),
    ],
)
def test_a_bad_line_is_a_value_error_naming_it(tmp_path, bad, message):
    path = write(tmp_path, {"question": "Hi", "category": "smalltalk"}, bad)
    with pytest.raises(ValueError, match=message):
        load_cases(path)


def test_an_empty_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="holds no cases"):
        load_cases(write(tmp_path, ""))


def test_a_case_that_must_fail_fails_with_its_reasons():
    cases = [
        Case("Where do you live?", "fact", expect_all=("lisbon",)),
        Case("Where do you live?", "fact", expect_all=("Lisbon", "Portugal"), expect_any=("Spain", "France")),
        Case("What's 2+2?", "offtopic", forbid=("Python", "Rust", "Kotlin")),
    ]
    report = run_cases(cases, Scripted())
    passed, wrong, leaked = report.cases
    assert (passed.passed, passed.why, passed.response) == (True, "", "I'm based in Lisbon.")
    assert not wrong.passed
    assert wrong.why == "missing 'Portugal'; none of 'Spain', 'France'"
    assert not leaked.passed and leaked.why == "forbidden 'Python', 'Rust'"
    assert (report.total, report.passed) == (3, 1)
    assert report.score == pytest.approx(1 / 3)


def test_history_is_replayed_first_in_one_fresh_session_per_case():
    ask = Scripted()
    cases = [Case("Where is that?", "multi-turn", history=("Where do you live?", "What's your salary?")),
             Case("Where do you live?", "fact")]
    report = run_cases(cases, ask)
    (s1, t1), (s2, t2), (s3, t3), (s4, t4) = ask.calls
    assert [t1, t2, t3] == ["Where do you live?", "What's your salary?", "Where is that?"]
    assert s1 == s2 == s3 and s4 != s1
    assert t4 == "Where do you live?"
    assert report.cases[0].response == "Lisbon is in Portugal."  # the reply to the question, not to its history


def test_unanswered_is_read_for_the_cases_session_after_its_turns():
    ask = Scripted()
    asked: list[tuple[str, int]] = []

    def recorded(session_id):
        asked.append((session_id, len(ask.calls)))
        return session_id == ask.calls[0][0]  # only the first case's session recorded one

    cases = [Case("What's your salary?", "private", unanswered=True),
             Case("Where do you live?", "fact", unanswered=True),
             Case("What's your salary?", "private", unanswered=False),
             Case("Where do you live?", "fact")]
    report = run_cases(cases, ask, unanswered_recorded=recorded)
    assert [r.passed for r in report.cases] == [True, False, True, True]
    assert report.cases[1].why == "no unanswered question recorded"
    # Each check comes after that case's turn, with its session; a case without "unanswered" is not checked.
    assert asked == [(ask.calls[0][0], 1), (ask.calls[1][0], 2), (ask.calls[2][0], 3)]


def test_a_wrongly_recorded_unanswered_question_fails():
    report = run_cases([Case("Where do you live?", "fact", unanswered=False)], Scripted(),
                       unanswered_recorded=lambda session_id: True)
    assert report.cases[0].why == "recorded an unanswered question"


def test_unanswered_without_a_record_to_read_fails_rather_than_passing():
    report = run_cases([Case("What's your salary?", "private", unanswered=True)], Scripted())
    assert not report.cases[0].passed
    assert "unanswered cannot be checked" in report.cases[0].why


def test_judging_by_reply_counts_every_turn_of_the_session():
    ask, recorded = judge_by_reply(Scripted(), lambda reply: "haven't written" in reply)
    cases = [Case("Where is that?", "multi-turn", history=("What's your salary?",), unanswered=True),
             Case("Where is that?", "multi-turn", history=("Where do you live?",), unanswered=True)]
    report = run_cases(cases, ask, unanswered_recorded=recorded)
    assert [r.passed for r in report.cases] == [True, False]


def test_a_failing_turn_fails_its_case_and_the_run_goes_on():
    def ask(session_id, text):
        if text == "boom":
            raise RuntimeError("backend down")
        return "fine"

    report = run_cases([Case("boom", "fact"), Case("ok", "fact", expect_all=("fine",))], ask)
    assert [(r.passed, r.why) for r in report.cases] == [(False, "error: RuntimeError: backend down"), (True, "")]


def test_progress_is_reported_after_each_case():
    seen = []
    run_cases([Case("Where do you live?", "fact")] * 3, Scripted(),
              progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_json_shape():
    cases = [Case("Where do you live?", "fact", expect_all=("Lisbon",)),
             Case("What's 2+2?", "offtopic", forbid=("Python",)),
             Case("Where is that?", "fact")]
    data = run_cases(cases, Scripted()).to_json()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"total", "passed", "score", "by_category", "cases"}
    assert (data["total"], data["passed"], data["score"]) == (3, 2, 0.6667)
    assert data["by_category"] == {"fact": {"total": 2, "passed": 2}, "offtopic": {"total": 1, "passed": 0}}
    assert data["cases"][1] == {"question": "What's 2+2?", "category": "offtopic", "passed": False,
                                "why": "forbidden 'Python'", "response": "4, and my skills are Python and Rust."}
    assert all(set(c) == {"question", "category", "passed", "why", "response"} for c in data["cases"])


def test_table_by_category_then_the_failing_cases_with_their_replies():
    replies = dict(REPLIES, **{"Tell me more": "line one\nline two"})
    cases = [Case("Where do you live?", "fact", expect_all=("Lisbon",)),
             Case("What's 2+2?", "offtopic", forbid=("Python",), line=7),
             Case("Tell me more", "multi-turn", expect_all=("three",))]
    table = run_cases(cases, Scripted(replies)).to_table()
    lines = table.splitlines()
    assert lines[0].split() == ["category", "passed", "total", "score"]
    assert lines[1].split() == ["fact", "1", "1", "100%"]
    assert lines[2].split() == ["offtopic", "0", "1", "0%"]
    assert lines[3].split() == ["multi-turn", "0", "1", "0%"]
    assert lines[5].split() == ["total", "1", "3", "33%"]
    assert "2 failing:" in table
    assert ("[offtopic] What's 2+2? (line 7)\n  why: forbidden 'Python'\n"
            "  reply: 4, and my skills are Python and Rust.") in table
    assert "  reply: line one\n         line two" in table
    assert "Where do you live?" not in table.split("failing:")[1]
