"""The twin-server command."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from twin_server.cli import main


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_help_imports_no_sdk():
    code = "import sys; from twin_server.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\nprint([m for m in ('boto3','openai','botocore') if m in sys.modules], file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "serve" in result.stdout and "chat" in result.stdout
    assert result.stderr.strip().endswith("[]")


def test_plugins_lists_bundled_backends(env):
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if l.startswith("local"))
    assert "twin-server" in line
    for backend in ("storage:filesystem", "persona:filesystem", "secrets:env", "llm:offline"):
        assert backend in line


def test_check_passes_with_the_example_persona(env):
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output


def test_check_fails_precisely_on_a_broken_persona(env, monkeypatch):
    persona = env / "persona"
    persona.mkdir()
    (persona / "facts.json").write_text(json.dumps({"headline": "no name"}))
    monkeypatch.setenv("TWIN_PERSONA_DIR", str(persona))
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1
    assert "FAILED   persona" in result.stderr and "full_name" in result.stderr
    assert result.output.count("full_name") == 1, result.output  # said once, on stderr
    assert "Traceback" not in result.output
    assert "FAILED" not in result.stdout


def test_check_fails_on_unknown_backend(env, monkeypatch):
    monkeypatch.setenv("TWIN_LLM", "gpt-nope")
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 2
    assert "unknown llm backend 'gpt-nope'" in result.output


def test_chat_in_the_terminal_uses_the_same_turn(env):
    result = CliRunner().invoke(main, ["chat", "--session", "terminal-0001"], input="What is your name?\n\n")
    assert result.exit_code == 0, result.output
    assert "You are talking to the twin of" in result.output
    stored = list((env / "data").glob("terminal-0001.jsonl"))
    assert stored and len(stored[0].read_text().splitlines()) == 2


def test_serve_prints_url_and_backends(env, monkeypatch):
    from flask import Flask

    calls = {}
    monkeypatch.setattr(Flask, "run", lambda self, **kwargs: calls.update(kwargs))
    result = CliRunner().invoke(main, ["serve", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/" in result.output and "llm=offline" in result.output
    assert calls["port"] == 8123 and calls["host"] == "127.0.0.1"


def write_cases(path, *cases):
    path.write_text("".join(json.dumps(case) + "\n" for case in cases))
    return str(path)


COVERED = {"question": "Where do you live?", "category": "fact", "expect_any": ["Lisbon"], "unanswered": False}
UNCOVERED = {"question": "What is your favourite football team?", "category": "unknown", "unanswered": True}


def test_eval_scores_through_the_turn_and_the_owner_inbox(env):
    cases = write_cases(env / "cases.jsonl", COVERED, UNCOVERED,
                        {"question": "Where do you live?", "category": "fact", "unanswered": True},  # must fail
                        {"question": "And what do you do?", "category": "multi-turn", "history": ["Hi, I'm Jane."],
                         "expect_any": ["Robotics"]})
    result = CliRunner().invoke(main, ["eval", cases, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["total"], report["passed"]) == (4, 3)
    assert report["by_category"]["fact"] == {"total": 2, "passed": 1}
    [failed] = [case for case in report["cases"] if not case["passed"]]
    assert failed["why"] == "no unanswered question recorded" and "Lisbon" in failed["response"]
    # Every case's session is gone, and so is what it put in the owner's inbox.
    assert list((env / "data").glob("*.jsonl")) == []
    inbox = CliRunner().invoke(main, ["inbox", "--json"])
    assert inbox.exit_code == 0, inbox.output
    assert json.loads(inbox.stdout)["questions"] == []


def test_eval_min_score_sets_the_exit_code(env):
    cases = write_cases(env / "cases.jsonl", COVERED, {**COVERED, "forbid": ["Lisbon"]})
    assert CliRunner().invoke(main, ["eval", cases, "--min-score", "0.5"]).exit_code == 0
    below = CliRunner().invoke(main, ["eval", cases, "--min-score", "0.9"])
    assert below.exit_code == 1 and "below --min-score" in below.stderr
    assert "forbidden" in below.stdout or "Lisbon" in below.stdout  # the failing case is shown with its reply


def test_eval_refuses_a_bad_case_file(env):
    (env / "bad.jsonl").write_text('{"question": "hi"}\n')
    result = CliRunner().invoke(main, ["eval", str(env / "bad.jsonl")])
    assert result.exit_code == 2 and "line 1" in result.output
