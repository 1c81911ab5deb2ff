"""Issue 13's benchmark: request size and turn time against persona size and conversation length.

For personas of 5 KB, 100 KB and 500 KB and conversations of 10, 100 and
1,000 stored messages, ``POST /chat`` (Flask's test client, the filesystem
store and persona, request logs and metrics on, the summary worker running)
with an LLM that answers at once and records what it was sent. Reported per
cell: characters and estimated tokens per request (target: within
``TWIN_CONTEXT_TOKENS`` everywhere), server time per turn (target: 500 KB /
1,000 within 1.5× of 5 KB / 10), retrieval time per turn, and how much of
the system prompt is a prefix shared with the turn before (what a prompt
cache reuses). For scale, what the whole persona plus the window would be.
The generated notes use a Zipf vocabulary with the questions' words spread
over its ranks; the persona source's own per-request directory scan is
shown apart, since it grows with the number of files whatever the core does.
Cells are measured in interleaved rounds, so drift in machine load hits all.

Run: ``python -m benchmarks.bench_grounding``
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from twin_local.persona import example_persona_dir
from twin_local.storage import FilesystemStore
from twin_server import Prompt, hookimpl
from twin_server.app import create_app
from twin_server.app_state import EXTENSION_KEY
from twin_server.grounding.tokens import MESSAGE_OVERHEAD, estimate_tokens
from twin_server.turn.prompt import build_system_prompt
from twin_server.types import Message

PERSONA_KB = (5, 100, 500)
MESSAGES = (10, 100, 1_000)
ROUNDS, PER_ROUND = 5, 24
BUDGET = 8000
QUESTIONS = ["What do you work on?", "Tell me about the harbour survey in Porto", "Which sensors do you trust?",
             "Where are you based?", "What did you learn from the ferry docking project?", "Do you mentor people?",
             "How do you test a new battery pack?", "What is Driftmap?"]
WORDS = ("boat harbour survey sonar buoy tide current anchor hull mast keel friends weekend project robot sensor "
         "battery firmware python rust field test report team lisbon porto ferry dock wind wave chart map depth "
         "crew island river bridge kalman filter gps drift storm calibration logbook prototype mooring").split()


class Recorder:
    """An LLM that answers at once and keeps what it was sent (measured after the turn, untimed)."""

    def __init__(self) -> None:
        self.last: Prompt | None = None
        self.systems: list[str] = []

    def complete(self, prompt: Prompt) -> str:
        self.last = prompt
        return "A short answer from the persona, with a sentence or two of detail about the boats."

    def size(self) -> tuple[int, int]:
        parts = [self.last.system, *(m.content for m in self.last.messages)]
        self.systems.append(self.last.system)
        return sum(map(len, parts)), sum(estimate_tokens(p) + MESSAGE_OVERHEAD for p in parts)

    def stream(self, prompt: Prompt):
        yield self.complete(prompt)


class Plugin:
    __name__ = "bench-grounding"

    def __init__(self) -> None:
        self.llm = Recorder()

    @hookimpl
    def register_llm_backends(self, register):
        register("recorder", lambda context: self.llm)


def vocabulary(rng: random.Random, size: int = 2000) -> tuple[list[str], list[float]]:
    """Words with Zipf frequencies, as prose has: pseudo-words, with the domain words spread over the
    ranks (the first is in most passages, later ones in a few), so retrieval meets common and rare words."""
    syllables = ["ka", "lo", "mi", "ren", "ta", "vo", "sul", "pe", "dri", "an", "os", "tek", "mar", "ul", "bi"]
    words = list(dict.fromkeys("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
                                for _ in range(size * 2)))[:size]
    for n, word in enumerate(WORDS):
        words.insert(5 + 40 * n, word)
    return words, [1 / (rank + 1) for rank in range(len(words))]


def make_persona(folder: Path, kilobytes: int, rng: random.Random) -> None:
    """The example persona plus generated notes (three sections each) up to ``kilobytes``."""
    shutil.copytree(example_persona_dir(), folder)
    words, weights = vocabulary(rng)
    size = sum(p.stat().st_size for p in folder.iterdir())
    n = 0
    while size < kilobytes * 1024:
        sections = []
        for k in range(3):
            heading = " ".join(rng.choices(words, weights, k=4)).capitalize()
            sentences = [" ".join(rng.choices(words, weights, k=rng.randint(8, 16))).capitalize() + "."
                         for _ in range(rng.randint(4, 9))]
            sections.append(f"## {heading}\n" + " ".join(sentences))
        text = f"# Log {n}\n\n" + "\n\n".join(sections) + "\n"
        if size + len(text) > kilobytes * 1024 + 512:
            text = text[: kilobytes * 1024 - size]
        (folder / f"log-{n:04d}.md").write_text(text)
        size += len(text.encode())
        n += 1


def seed(store: FilesystemStore, session_id: str, count: int, rng: random.Random) -> None:
    start = Message("user", "x").timestamp
    words, weights = vocabulary(rng)
    store.append(session_id, [Message("user" if i % 2 == 0 else "assistant",
                                      " ".join(rng.choices(words, weights, k=50)), start + timedelta(seconds=i))
                              for i in range(count)])


def shared_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def main() -> None:
    rng = random.Random(13)
    with tempfile.TemporaryDirectory(prefix="bench-grounding-") as tmp:
        work = Path(tmp)
        cells = {}
        for kb in PERSONA_KB:
            make_persona(work / f"persona-{kb}", kb, rng)
            plugin = Plugin()
            app = create_app({"PERSONA_DIR": str(work / f"persona-{kb}"), "DATA_DIR": str(work / f"data-{kb}"),
                              "LLM": "recorder", "RATE_LIMIT": "off", "LOG_LEVEL": "WARNING",
                              "CONTEXT_TOKENS": BUDGET}, plugins=[plugin])
            state = app.extensions[EXTENSION_KEY]
            retrieval: list[float] = []
            state.turns.after_turn.append(lambda turn, result, sink=retrieval: sink.append(turn.context.retrieval_seconds))
            started = time.perf_counter()
            persona = state.turns.persona()
            state.turns.grounder.view(persona).passages.index  # noqa: B018 (built once per persona)
            build = time.perf_counter() - started
            whole = len(build_system_prompt(persona))
            store = FilesystemStore(work / f"data-{kb}")
            for count in MESSAGES:
                seed(store, f"bench-{kb}-{count}", count, rng)
                cells[(kb, count)] = {"app": app, "plugin": plugin, "client": app.test_client(), "times": [],
                                      "sizes": [], "prefix": [], "retrieval": retrieval, "whole": whole,
                                      "build": build, "session": f"bench-{kb}-{count}", "rs": [],
                                      "load": []}
        for cell in cells.values():  # warm-up
            cell["client"].post("/chat", json={"message": "hello", "session_id": cell["session"]})
        for round_ in range(ROUNDS):
            for (kb, count), cell in cells.items():
                recorder = cell["plugin"].llm
                for i in range(PER_ROUND):
                    question = QUESTIONS[(round_ * PER_ROUND + i) % len(QUESTIONS)]
                    before = len(cell["retrieval"])
                    t0 = time.perf_counter()
                    response = cell["client"].post("/chat", json={"message": question, "session_id": cell["session"]})
                    cell["times"].append(time.perf_counter() - t0)
                    assert response.status_code == 200, response.get_data(as_text=True)
                    cell["sizes"].append(recorder.size())
                    cell["rs"].extend(cell["retrieval"][before:])
                    t1 = time.perf_counter()
                    cell["app"].extensions[EXTENSION_KEY].turns.persona()
                    cell["load"].append(time.perf_counter() - t1)
                    if len(recorder.systems) >= 2:
                        cell["prefix"].append(shared_prefix(recorder.systems[-2], recorder.systems[-1])
                                              / len(recorder.systems[-1]))
            for cell in cells.values():
                cell["app"].extensions[EXTENSION_KEY].turns.summaries.worker.drain(30)
        base = statistics.median(cells[(PERSONA_KB[0], MESSAGES[0])]["times"])
        print(f"budget TWIN_CONTEXT_TOKENS={BUDGET}; {ROUNDS} rounds x {PER_ROUND} turns per cell")
        print("persona  messages | request chars  est. tokens (max) | turn ms (median)  ratio | retrieval ms "
              "| persona load ms | shared prefix | whole persona+window chars | index build ms")
        worst = 0
        for (kb, count), cell in cells.items():
            chars = statistics.median(s[0] for s in cell["sizes"])
            tokens = max(s[1] for s in cell["sizes"])
            worst = max(worst, tokens)
            median = statistics.median(cell["times"])
            window = 20 * 50 * 7
            print(f"{kb:4d} KB {count:8d} | {chars:13.0f} {tokens:12d}       | {1000 * median:16.2f} {median / base:6.2f} "
                  f"| {1000 * statistics.median(cell['rs']):12.3f} | {1000 * statistics.median(cell['load']):15.3f} "
                  f"| {statistics.median(cell['prefix']):13.0%} "
                  f"| {cell['whole'] + window:26d} | {1000 * cell['build']:14.0f}")
        big, small = cells[(PERSONA_KB[-1], MESSAGES[-1])], cells[(PERSONA_KB[0], MESSAGES[0])]
        ratio = statistics.median(big["times"]) / base
        # The persona source's own per-request check (one directory scan: a stat per file) grows with the
        # number of files, whatever the grounding does; shown apart so each part's cost is visible.
        without = (statistics.median(big["times"]) - statistics.median(big["load"])) / (
            base - statistics.median(small["load"]))
        print(f"largest request {worst} estimated tokens (target <= {BUDGET}); "
              f"turn at 500 KB / 1,000 messages {ratio:.2f}x the 5 KB / 10 one (target <= 1.5), "
              f"{without:.2f}x without the persona source's directory scan")


if __name__ == "__main__":
    main()
