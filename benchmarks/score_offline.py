"""Score the offline model on eval case files, straight through ``OfflineLLM`` (no HTTP, no store).

Run: ``python -m benchmarks.score_offline [--table] [--persona DIR] evals/example.jsonl evals/heldout.jsonl``

Each case replays its history in its own conversation, as the chat turn would:
earlier user messages and the model's replies go into ``Prompt.messages``. A
session counts as having recorded an unanswered question when one of its
replies is the model's honest "not covered" answer, which is what the owner
inbox records for the offline model. (Its cost per turn: ``bench_offline``.)
"""

from __future__ import annotations

import argparse
import json
import sys

from twin_local.offline import OfflineLLM, is_not_covered
from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_server.evaluation import judge_by_reply, load_cases, run_cases
from twin_server.types import Message, Prompt


def offline_ask(persona_dir: str):
    """An ``ask(session_id, text)`` over one OfflineLLM, keeping each session's messages in memory."""
    llm = OfflineLLM()
    persona = FilesystemPersonaSource(persona_dir).load()
    sessions: dict[str, list[Message]] = {}

    def ask(session_id: str, text: str) -> str:
        messages = sessions.setdefault(session_id, [])
        messages.append(Message("user", text))
        reply = llm.complete(Prompt(system="", messages=tuple(messages), persona=persona))
        messages.append(Message("assistant", reply))
        return reply

    return ask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--persona", default=example_persona_dir())
    parser.add_argument("--table", action="store_true", help="print the table with the failing cases")
    parser.add_argument("--json", action="store_true", help="print each report as JSON")
    args = parser.parse_args(argv)
    for path in args.files:
        cases = load_cases(path)
        ask, recorded = judge_by_reply(offline_ask(args.persona), is_not_covered)
        report = run_cases(cases, ask, unanswered_recorded=recorded)
        print(f"{path}: {report.passed}/{report.total} = {report.score:.3f}")
        if args.table:
            print(report.to_table())
        if args.json:
            print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
