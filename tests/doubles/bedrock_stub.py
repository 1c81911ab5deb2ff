"""Bedrock's Converse API through botocore's Stubber, answering every call (moto has no Converse).

``answer_every_call(client)`` activates a Stubber on a bedrock-runtime client and
queues the next answer as each call starts, whichever operation it is, so a
caller that does not know the order of its calls (a contract test) can use it::

    answer_every_call(llm.client, text="Hello from Bedrock.")        # converse and converse_stream
    answer_every_call(llm.client, error=("ValidationException", 400))  # every call refused
"""

from __future__ import annotations

import re
from typing import Any

from botocore.stub import Stubber


class Events(dict):
    """converse_stream's "stream" for the Stubber, which accepts only a dict there.

    Its validator iterates the dict, so the events appear only once armed; then it
    iterates like botocore's EventStream and can be closed.
    """

    def __init__(self, *events: Any) -> None:
        super().__init__()
        self.events, self.armed, self.closed = events, False, False

    def __iter__(self):
        return iter(self.events if self.armed else ())

    def close(self) -> None:
        self.closed = True


def reply(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 3, "totalTokens": 13},
        "metrics": {"latencyMs": 5},
    }


def stream_events(text: str) -> Events:
    deltas = [{"contentBlockDelta": {"delta": {"text": word}, "contentBlockIndex": 0}}
              for word in re.findall(r"\S+\s*", text)]
    return Events(
        {"messageStart": {"role": "assistant"}},
        *deltas,
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": {"inputTokens": 10, "outputTokens": len(deltas), "totalTokens": 10 + len(deltas)},
                      "metrics": {"latencyMs": 5}}},
    )


def answer_every_call(client: Any, *, text: str = "Hello from Bedrock.",
                      error: tuple[str, int] | None = None) -> Stubber:
    """Activate a Stubber on ``client`` that answers each call with ``text`` (or refuses it with ``error``)."""
    stubber = Stubber(client)
    names = {"Converse": "converse", "ConverseStream": "converse_stream"}

    def queue(model: Any, **kwargs: Any) -> None:
        # provide-client-params comes before the Stubber's own checks of the call.
        method = names[model.name]
        if error is not None:
            stubber.add_client_error(method, error[0], "refused by the stub", error[1])
        elif method == "converse":
            stubber.add_response(method, reply(text))
        else:
            events = stream_events(text)
            stubber.add_response(method, {"stream": events})
            events.armed = True

    for name in names:
        client.meta.events.register(f"provide-client-params.bedrock-runtime.{name}", queue)
    stubber.activate()
    return stubber
