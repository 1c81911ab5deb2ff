"""``max_tokens`` on the offline twin through ``/v1``: the reply is cut, and says so with finish_reason "length"."""

import pytest

from tests.doubles.sse_client import parse
from twin_server.app import create_app


@pytest.fixture
def client(tmp_path):
    return create_app({"DATA_DIR": str(tmp_path), "RATE_LIMIT": "off"}).test_client()


def ask(client, **body):
    return client.post("/v1/chat/completions", json={
        "model": "ada-quill", "messages": [{"role": "user", "content": "Tell me your story"}], **body})


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_a_reply_longer_than_max_tokens_is_cut_and_says_length(client, field):
    whole = ask(client).get_json()["choices"][0]
    assert whole["finish_reason"] == "stop" and len(whole["message"]["content"]) > 40
    cut = ask(client, **{field: 10}).get_json()["choices"][0]
    assert cut["finish_reason"] == "length"
    assert len(cut["message"]["content"]) <= 40 and whole["message"]["content"].startswith(cut["message"]["content"])
    assert ask(client, **{field: 100_000}).get_json()["choices"][0] == whole


def test_a_streamed_reply_is_cut_the_same(client):
    chunks = [e.json() for e in parse(ask(client, max_tokens=10, stream=True).get_data(as_text=True))
              if e.data != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert len(text) <= 40 and chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert text == ask(client, max_tokens=10).get_json()["choices"][0]["message"]["content"]
