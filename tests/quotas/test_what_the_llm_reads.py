"""Issue 18, item 4: the caps and the budget count everything a visitor makes the LLM read, /v1's too.

The attack: a /v1 call whose last user message is "hi" but which carries 50 KB
of system messages and history was charged 2 characters against a session cap
of 100, and one budget unit, like a fresh /chat.
"""

from twin_server.quotas.policy import SessionAllowance, visitor_chars
from twin_server.turn.turn import TurnRequest
from twin_server.types import Message, utcnow

BLOCK = "x" * 4000  # TWIN_MAX_MESSAGE_CHARS: the longest one message may be


def heavy_messages(blocks=6):
    """About 50 KB for the LLM to read behind a two-character question."""
    system = [{"role": "system", "content": BLOCK} for _ in range(blocks)]
    history = [{"role": role, "content": BLOCK} for _ in range(blocks // 2) for role in ("user", "assistant")]
    return [*system, *history, {"role": "user", "content": "hi"}]


def completion(client, messages, **body):
    return client.post("/v1/chat/completions", json={"model": "twin", "messages": messages, **body})


def test_a_v1_call_carrying_50_kb_is_refused_by_a_100_character_cap(scripted_app, scripted):
    client = scripted_app(SESSION_MAX_CHARS=100, RATE_LIMIT="off").test_client()
    refused = completion(client, heavy_messages())
    assert refused.status_code == 429, refused.get_json()
    assert "limit of 100 characters" in refused.get_json()["error"]["message"]
    assert scripted.llm.calls == 0
    stored = completion(client, heavy_messages(), session_id="visitor-0001")  # stored or not, the same count
    assert stored.status_code == 429 and scripted.llm.calls == 0
    assert completion(client, [{"role": "user", "content": "hi"}]).status_code == 200  # a light call still passes


def test_a_stored_v1_conversation_counts_the_history_it_sends_every_time(scripted_app, scripted):
    client = scripted_app(SESSION_MAX_CHARS=20_000, RATE_LIMIT="off").test_client()
    messages = [{"role": "user", "content": BLOCK}, {"role": "assistant", "content": BLOCK},
                {"role": "user", "content": "hi"}]
    assert completion(client, messages, session_id="visitor-0001").status_code == 200  # 8,002 of 20,000
    assert completion(client, messages, session_id="visitor-0001").status_code == 200  # 16,004
    assert completion(client, messages, session_id="visitor-0001").status_code == 429  # 24,006: the cap
    assert completion(client, messages, session_id="visitor-0002").status_code == 200  # another session is not
    assert scripted.llm.calls == 3


def test_a_heavy_v1_call_costs_the_budget_what_it_weighs(scripted_app, scripted):
    client = scripted_app(DAILY_LLM_BUDGET=10, RATE_LIMIT="off").test_client()
    spent = completion(client, heavy_messages())  # 48,002 characters: 13 units of 4,000 > 10
    assert spent.status_code == 503 and scripted.llm.calls == 0
    # Refused uncounted: what it did not spend is still there for ten ordinary chats.
    statuses = [client.post("/chat", json={"message": "hi"}).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [503]
    assert scripted.llm.calls == 10


def test_a_v1_call_within_the_budget_spends_its_weight(scripted_app, scripted):
    client = scripted_app(DAILY_LLM_BUDGET=20, RATE_LIMIT="off").test_client()
    assert completion(client, heavy_messages()).status_code == 200  # 13 units
    statuses = [client.post("/chat", json={"message": "hi"}).status_code for _ in range(8)]
    assert statuses == [200] * 7 + [503]  # 13 + 7 = 20


def test_what_a_turn_makes_the_llm_read():
    now = utcnow()
    request = TurnRequest("visitor-0001", "hello", instructions="be brief",
                          history=(Message("user", "abc", now), Message("assistant", "de", now)))
    assert visitor_chars(request) == 5 + 8 + 3 + 2
    assert visitor_chars(TurnRequest("visitor-0001", "hello")) == 5


def test_unstored_turns_leave_no_session_counters():
    from limits.storage import MemoryStorage

    storage = MemoryStorage()
    allowance = SessionAllowance(storage, max_messages=1, max_chars=100)
    for _ in range(3):  # each a session of its own: checked alone, never counted
        allowance(TurnRequest("stateless-0001", "hi", store=False))
    assert storage.storage == {}
    allowance(TurnRequest("visitor-0001", "hi"))
    assert sorted(storage.storage.values()) == [1, 2]


def test_the_web_chat_is_one_unit_whatever_its_length(scripted_app):
    allowance = scripted_app(DAILY_LLM_BUDGET=5).extensions["twin_server"].turns.guards[0]
    assert allowance.budget_units(4000) == 1 and allowance.budget_units(1) == 1 and allowance.budget_units(4001) == 2
