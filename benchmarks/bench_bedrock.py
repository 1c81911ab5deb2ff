"""What one Bedrock Converse call costs us in CPU, with and without botocore's per-call parameter validation.

    python -m benchmarks.bench_bedrock            # from the repository root; about 10 s

No network: botocore's Stubber answers (tests/doubles/bedrock_stub.py), so the
figures are botocore's request building plus ours, and the stub's own cost
(queueing and checking each canned answer), which both columns pay alike.
``validated`` is the same client with ``parameter_validation`` on, as before.
Best of a few rounds, CPU time per call, at 1, 21 and 101 messages.
Not a test: it prints its figures and asserts nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from benchmarks.bench_openai import make_prompt
from tests.doubles.bedrock_stub import answer_every_call
from twin_aws.bedrock import BedrockLLM
from twin_aws.clients import make_client

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
ROUNDS, CALLS, WARMUP = 3, 1000, 100


def per_call_cpu(fn: Callable[[], object]) -> float:
    """CPU microseconds per call, the best of ROUNDS rounds."""
    for _ in range(WARMUP):
        fn()
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(CALLS):
            fn()
        best = min(best, (time.process_time() - started) / CALLS * 1e6)
    return best


def main() -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    ours = BedrockLLM.from_config({"BEDROCK_MODEL_ID": MODEL})
    validated = BedrockLLM(make_client("bedrock-runtime", 60.0, what="bench"), ours.model_id, ours.inference,
                           ours.prompt_cache)
    for llm in (ours, validated):
        answer_every_call(llm.client, text="Fine, thanks.")
    print(f"{'messages':>8} | {'ours us':>8} {'validated us':>12} {'ratio':>6}")
    for size in (1, 21, 101):
        prompt = make_prompt(size)
        assert ours.complete(prompt) == validated.complete(prompt) == "Fine, thanks."
        fast, slow = per_call_cpu(lambda: ours.complete(prompt)), per_call_cpu(lambda: validated.complete(prompt))
        print(f"{size:>8} | {fast:>8.0f} {slow:>12.0f} {fast / slow:>6.2f}")


if __name__ == "__main__":
    main()
