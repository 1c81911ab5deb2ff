"""The offline model's time per turn as a persona grows: about 5 KB, and about 500 KB, in one run.

Measured through the public ``OfflineLLM`` API only (``complete(prompt)``):
each turn is one question with a short history, after the persona's index
was built by an earlier turn; the build itself (the first turn after an
edit) is timed apart. The 5 KB persona is the bundled example with its FAQ
note only; the 500 KB one is the example plus generated notes (seeded, Zipf-like
word frequencies over an 8,000-word vocabulary, so the index has long
posting lists as real writing does). Rounds alternate between the sizes.

Run: ``python -m benchmarks.bench_persona_size`` (about 20 s).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time

from twin_local.offline import OfflineLLM
from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_server import Message, Persona, Prompt

QUESTIONS = (
    "What do you do?", "Where do you live?", "What are your skills?", "Tell me about your projects",
    "What did you study?", "How did you get into marine robotics?", "What do you think about sonar arrays?",
    "Do you like sailing?", "What was your hardest project?", "Which tools do you use for testing?",
)
ROUNDS = 7
TARGET_KB = (5, 500)


def _vocabulary(rng: random.Random, size: int = 8000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(size * 2)}
    return sorted(words)[:size]


def notes(kilobytes: int, seed: int = 16) -> dict[str, str]:
    """Markdown notes of about ``kilobytes`` KB, in paragraphs under headings."""
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng) + ["robot", "ocean", "sonar", "survey", "boat", "testing", "team", "project"]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    documents, size, n = {}, 0, 0
    while size < kilobytes * 1024:
        paragraphs = []
        for _ in range(8):
            words = rng.choices(vocabulary, weights, k=rng.randint(40, 90))
            paragraphs.append(" ".join(words).capitalize() + ".")
        text = f"# Note {n}\n\n" + "\n\n".join(paragraphs)
        documents[f"note-{n:04d}"] = text
        size += len(text.encode())
        n += 1
    return documents


def personas() -> dict[int, Persona]:
    example = FilesystemPersonaSource(example_persona_dir(), reload_seconds=0).load()
    small = dataclasses.replace(example, notes={"faq": example.notes["faq"]})
    large = dataclasses.replace(example, notes={**example.notes, **notes(500)})
    return {5: small, 500: large}


def size_kb(persona: Persona) -> float:
    text = [persona.summary, persona.style, persona.linkedin, *persona.notes.values(), repr(dict(persona.facts))]
    return sum(len(t.encode()) for t in text) / 1024


def main() -> None:
    chosen = personas()
    llms = {kb: OfflineLLM() for kb in chosen}
    history = (Message("user", "Hi!"), Message("assistant", "Hello! Ask me about my work."))
    prompts = {kb: [Prompt(system="", messages=(*history, Message("user", q)), persona=p) for q in QUESTIONS]
               for kb, p in chosen.items()}
    build_ms = {}
    for kb, llm in llms.items():
        started = time.perf_counter()
        llm.complete(prompts[kb][0])  # builds the index
        build_ms[kb] = 1000 * (time.perf_counter() - started)
    times: dict[int, list[float]] = {kb: [] for kb in chosen}
    for n in range(ROUNDS):
        for kb in (TARGET_KB if n % 2 == 0 else TARGET_KB[::-1]):
            started = time.perf_counter()
            for prompt in prompts[kb]:
                assert llms[kb].complete(prompt)
            times[kb].append(1000 * (time.perf_counter() - started) / len(prompts[kb]))
    base = statistics.median(times[TARGET_KB[0]])
    print(f"{'persona':>10} {'actual KB':>10} {'ms/turn':>8} {'vs 5 KB':>8} {'index build ms':>15}")
    for kb, persona in chosen.items():
        median = statistics.median(times[kb])
        print(f"{kb:>8} KB {size_kb(persona):>10.0f} {median:>8.2f} {median / base:>8.1f} {build_ms[kb]:>15.0f}")


if __name__ == "__main__":
    main()
