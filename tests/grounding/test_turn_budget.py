"""Every entry point's request stays within TWIN_CONTEXT_TOKENS: stored history, /v1 history and instructions."""

from __future__ import annotations

import pytest

from twin_server.grounding.tokens import MESSAGE_OVERHEAD, estimate_tokens

BUDGET = 1200


def request_tokens(prompt):
    return sum(estimate_tokens(text) + MESSAGE_OVERHEAD for text in [prompt.system, *(m.content for m in prompt.messages)])


def test_long_stored_messages_are_cut_oldest_first(scripted_app, scripted):
    client = scripted_app(CONTEXT_TOKENS=BUDGET, SUMMARY_EVERY=0).test_client()
    for n in range(8):
        client.post("/chat", json={"message": f"message {n} " + "word " * 150, "session_id": "long-00001"})
    prompt = scripted.llm.prompts[-1]
    assert request_tokens(prompt) <= BUDGET
    assert prompt.messages[-1].content.startswith("message 7 ")
    kept = [m.content.split(" ")[1] for m in prompt.messages if m.role == "user"]
    assert kept == sorted(kept) and kept[-1] == "7" and len(kept) < 8  # a run of the newest


def test_v1_client_history_and_instructions_are_cut_within_the_budget(scripted_app, scripted):
    client = scripted_app(CONTEXT_TOKENS=BUDGET).test_client()
    history = []
    for n in range(20):
        history += [{"role": "user", "content": f"old {n} " + "x " * 200},
                    {"role": "assistant", "content": f"reply {n} " + "y " * 200}]
    pirate = [{"role": "system", "content": "PIRATE " * 550} for _ in range(4)]  # 4 × 3,850 characters
    messages = [*pirate, *history, {"role": "user", "content": "And now?"}]
    response = client.post("/v1/chat/completions", json={"model": "m", "messages": messages})
    assert response.status_code == 200
    prompt = scripted.llm.prompts[-1]
    assert request_tokens(prompt) <= BUDGET
    assert "PIRATE" not in prompt.system  # 2,200 words of instructions do not fit: cut whole
    assert prompt.messages[-1].content == "And now?"
    assert 0 < len(prompt.messages) - 1 < 40 and prompt.messages[-2].content.startswith("reply 19 ")

    short = [{"role": "system", "content": "Answer like a pirate."}, *history[-4:],
             {"role": "user", "content": "And now?"}]
    client.post("/v1/chat/completions", json={"model": "m", "messages": short})
    prompt = scripted.llm.prompts[-1]
    assert "Answer like a pirate." in prompt.system  # instructions that fit are kept before old history
    assert request_tokens(prompt) <= BUDGET


@pytest.mark.parametrize("path", ["/chat", "/chat/stream", "/v1/chat/completions"])
def test_a_message_over_the_whole_budget_is_a_400_before_anything_is_spent(scripted_app, scripted, path):
    client = scripted_app(CONTEXT_TOKENS=600, MAX_MESSAGE_CHARS=10_000).test_client()
    text = "boats " * 1500
    body = {"message": text} if path != "/v1/chat/completions" else {
        "model": "m", "messages": [{"role": "user", "content": text}]}
    response = client.post(path, json=body)
    assert response.status_code == 400
    detail = response.get_json()
    detail = detail.get("detail") or detail["error"]["message"]
    assert "too long for this twin" in detail and "tokens" in detail
    assert scripted.llm.calls == 0 and scripted.store.calls == []


def test_bad_budget_settings_stop_the_start(scripted_app):
    from twin_server.errors import StartupError

    with pytest.raises(StartupError) as failed:
        scripted_app(CONTEXT_TOKENS=10, KNOWLEDGE_SHARE=2, SUMMARY_EVERY=-1)
    assert "TWIN_CONTEXT_TOKENS must be at least 256" in str(failed.value)


def test_check_reports_the_core_against_the_budget(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from twin_server.cli import main

    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0 and "its core takes ~" in result.output and "of 8000 tokens" in result.output
    monkeypatch.setenv("TWIN_CONTEXT_TOKENS", "300")
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1 and "TWIN_CONTEXT_TOKENS=300" in result.output
