"""The offline model's cost per turn, against a bare Flask request, in one run.

Every question of the golden set (``evals/example.jsonl``), each with its
history and the model's own earlier replies, is answered with the message
caches cleared first (``analysis.clear_message_caches``), so each turn pays for reading a new message.
The baseline is one request to the bare Flask JSON endpoint through Flask's
test client in the same process. Rounds alternate between the two.

Run: ``python -m benchmarks.bench_offline``
"""

from __future__ import annotations

import os
import statistics
import time

from benchmarks.bare_app import app as bare_app
from twin_local import analysis
from twin_local.offline import OfflineLLM
from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_server.evaluation import load_cases
from twin_server.types import Message, Prompt

ROUNDS = 7
CASES = os.path.join(os.path.dirname(__file__), os.pardir, "evals", "example.jsonl")


def prompts(llm: OfflineLLM) -> list[Prompt]:
    persona = FilesystemPersonaSource(example_persona_dir()).load()
    out = []
    for case in load_cases(CASES):
        messages: list[Message] = []
        for text in case.history:
            messages.append(Message("user", text))
            messages.append(Message("assistant", llm.complete(Prompt("", tuple(messages), persona))))
        messages.append(Message("user", case.question))
        out.append(Prompt("", tuple(messages), persona))
    return out


def main() -> None:
    llm = OfflineLLM()
    work = prompts(llm)
    client = bare_app.test_client()
    offline, bare = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for prompt in work:
            analysis.clear_message_caches()
            llm.complete(prompt)
        offline.append((time.perf_counter() - started) / len(work))
        started = time.perf_counter()
        for prompt in work:
            client.post("/chat", json={"message": prompt.messages[-1].content})
        bare.append((time.perf_counter() - started) / len(work))
    turn, request = statistics.median(offline), statistics.median(bare)
    print(f"offline turn      median {turn * 1e6:7.1f} µs  ({len(work)} golden-set prompts)")
    print(f"bare Flask request median {request * 1e6:7.1f} µs  (test client, same process)")
    print(f"ratio turn/request: {turn / request:.2f}  (target <= 0.5)")


if __name__ == "__main__":
    main()
