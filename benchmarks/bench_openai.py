"""What one call through the ``openai`` backend costs us, next to a bare HTTP POST of the same JSON.

    python -m benchmarks.bench_openai            # from the repository root; about 30 s

The instant OpenAI server (benchmarks/instant_openai.py: keep-alive, a few us
per answer) runs in its own process, so the figures are the client side only:
wall time and this process's CPU time per call, best of a few rounds, at 1, 21
and 101 messages (a ~6 KB system prompt plus the conversation). Four clients:

  raw      requests.Session posting the same JSON body, then reading the reply
  backend  OpenAIBackend.complete(prompt), as the app calls it (our transport, twin_openai/transport.py)
  httpx    the same backend over httpx's own transport (httpcore + h11), as with a proxy set
  typed    the SDK's typed client.chat.completions.create (what the backend avoids)

Not a test: it prints its figures and asserts nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import openai
import requests

from benchmarks import instant_openai
import twin_openai
from twin_openai.backend import OpenAIBackend
from twin_server import BackendContext
from twin_server.types import Message, Persona, Prompt

KEY = "sk-bench-0000"
SIZES = (1, 21, 101)
ROUNDS = 3
CALLS = 1000
TYPED_CALLS = 60
WARMUP = 20


def make_prompt(count: int) -> Prompt:
    messages = tuple(
        Message("user" if i % 2 == 0 else "assistant", f"Message {i}: " + "a few words of conversation " * 6)
        for i in range(count - 1, -1, -1)
    )
    system = "You are Test Person. " + "Facts and rules about the person. " * 180
    return Prompt(system=system, messages=messages, persona=Persona(full_name="Test Person"), timeout=30.0)


def per_call(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per call, the best of ROUNDS rounds."""
    for _ in range(WARMUP):
        fn()
    best_wall = best_cpu = float("inf")
    for _ in range(ROUNDS):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            fn()
        best_wall = min(best_wall, (time.perf_counter() - wall) / calls * 1000)
        best_cpu = min(best_cpu, (time.process_time() - cpu) / calls * 1000)
    return best_wall, best_cpu


def main() -> None:
    with instant_openai.running() as (base_url, _):
        factories = {}
        twin_openai.register_llm_backends(register=factories.__setitem__)
        backend = factories["openai"](
            BackendContext(config={"OPENAI_BASE_URL": base_url}, secret={"OPENAI_API_KEY": KEY}.__getitem__)
        )
        over_httpx = OpenAIBackend(backend.client.with_options(http_client=openai.DefaultHttpxClient()),
                                   backend.settings, backend.translate)
        session = requests.Session()
        url, auth = base_url + "/chat/completions", {"Authorization": f"Bearer {KEY}"}
        print(f"openai backend vs a bare requests.Session POST; fake server at {base_url}")
        print(f"{'messages':>8} | {'raw ms':>7} {'backend ms':>10} {'ratio':>6} | {'raw CPU':>7} {'backend CPU':>11} "
              f"{'ratio':>6} | {'httpx CPU':>9} {'ours/httpx':>10} | {'typed ms':>8} {'typed CPU':>9}")
        for size in SIZES:
            prompt = make_prompt(size)
            body = {
                "model": backend.settings.model,
                "messages": [{"role": "system", "content": prompt.system}]
                + [{"role": m.role, "content": m.content} for m in prompt.messages],
            }

            def raw() -> str:
                reply = session.post(url, json=body, headers=auth, timeout=30)
                reply.raise_for_status()
                return reply.json()["choices"][0]["message"]["content"]

            def typed() -> str:
                return backend.client.chat.completions.create(
                    model=body["model"], messages=body["messages"], timeout=30
                ).choices[0].message.content

            assert raw() == backend.complete(prompt) == over_httpx.complete(prompt) == typed() == "Fine, thanks."
            raw_ms, raw_cpu = per_call(raw, CALLS)
            ours_ms, ours_cpu = per_call(lambda: backend.complete(prompt), CALLS)
            _, httpx_cpu = per_call(lambda: over_httpx.complete(prompt), CALLS)
            typed_ms, typed_cpu = per_call(typed, TYPED_CALLS)
            print(f"{size:>8} | {raw_ms:>7.2f} {ours_ms:>10.2f} {ours_ms / raw_ms:>6.2f} | {raw_cpu:>7.2f} "
                  f"{ours_cpu:>11.2f} {ours_cpu / raw_cpu:>6.2f} | {httpx_cpu:>9.2f} {ours_cpu / httpx_cpu:>10.2f} | "
                  f"{typed_ms:>8.2f} {typed_cpu:>9.2f}")


if __name__ == "__main__":
    main()
