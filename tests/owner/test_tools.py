"""The tool loop of a turn: the core runs the model's calls, refuses hostile ones, and asks again (3 rounds at most)."""

import json

import pytest

from tests.doubles.scripted import SCRIPTED_CONFIG, ScriptedPlugin
from tests.doubles.sse_client import parse as parse_events
from tests.doubles.tooled import OwnerTestPlugin, asks, call
from twin_server import Reply
from twin_server.app import create_app
from twin_server.errors import BackendUnavailable
from twin_server.owner.toolbox import TOOLS

SESSION = "tool-session-1"
VISITOR = "Hi, I'm Jane Doe, a recruiter. Write to jane@example.com"


@pytest.fixture
def owner_plugin():
    return OwnerTestPlugin()


@pytest.fixture
def build(tmp_path, clock, owner_plugin):
    def build(**config):
        return create_app(
            {**SCRIPTED_CONFIG, "LLM": "tooled", "NOTIFY": "recorder", "DATA_DIR": str(tmp_path), **config},
            plugins=[ScriptedPlugin(), owner_plugin], entrypoints=False,
            retry_options={"clock": clock, "sleep": clock.sleep},
        )

    return build


def owner_of(app):
    return app.extensions["twin_server"].owner


def chat(app, message=VISITOR):
    response = app.test_client().post("/chat", json={"message": message, "session_id": SESSION})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_contact_call_is_run_stored_answered_and_notified_after_the_turn(build, owner_plugin):
    app = build()
    contact = call("record_contact", {"email": "jane@example.com", "name": "Jane Doe", "notes": "A role"})
    owner_plugin.llm.steps = [asks(contact, text="Noted!"), Reply("Thanks Jane, I'll pass it on.")]
    body = chat(app)
    assert body["response"] == "Noted!\n\nThanks Jane, I'll pass it on."
    first, second = owner_plugin.llm.prompts
    assert [t.name for t in first.tools] == ["record_contact", "record_unanswered_question"]
    assert first.tool_rounds == ()
    [done] = second.tool_rounds
    assert done.calls == (contact,) and done.text == "Noted!"
    assert done.results[0].ok and json.loads(done.results[0].content) == {"recorded": True}
    [lead] = owner_of(app).leads()
    assert (lead.email, lead.name, lead.notes, lead.session_id) == ("jane@example.com", "Jane Doe", "A role", SESSION)
    assert owner_plugin.notifier.wait_for(1)[0].id == lead.id
    assert owner_of(app).delivery.drain(5)
    assert owner_of(app).leads()[0].delivery == {"recorder": "delivered"}


def test_an_unanswered_question_call_is_recorded(build, owner_plugin):
    app = build()
    owner_plugin.llm.steps = [asks(call("record_unanswered_question", {"question": "What is your salary?"})),
                              Reply("I'd rather not say; I've noted your question.")]
    chat(app, "What is your salary?")
    [question] = owner_of(app).questions()
    assert question.question == "What is your salary?" and question.session_ids == (SESSION,)


HOSTILE = [
    call("record_contact", "jane@example.com"),                                  # not a JSON object
    call("record_contact", ["jane@example.com"]),
    call("record_contact", {}),                                                  # missing the address
    call("record_contact", {"email": "jane@example.com", "phone": "555"}),      # an unknown argument
    call("record_contact", {"email": "not an address"}),
    call("record_contact", {"email": "ceo@othercompany.com"}),                  # never written by the visitor
    call("record_contact", {"email": "jane@example.com", "name": "J" * 101}),
    call("record_contact", {"email": "jane@example.com", "notes": "n" * 1001}),
    call("record_contact", {"email": "jane@example.com", "name": "Jane\u2028Doe"}),
    call("record_contact", {"email": {"$ne": None}}),
    call("record_unanswered_question", {"question": "q" * 501}),
    call("record_unanswered_question", {"question": ""}),
    call("record_unanswered_question", {"question": 42}),
    call("delete_everything", {}),                                               # no such tool
]


def test_hostile_arguments_are_refused_back_to_the_model_and_never_stored(build, owner_plugin):
    app = build()
    owner_plugin.llm.steps = [asks(*HOSTILE), Reply("Sorry, I could not record that.")]
    chat(app)
    [done] = owner_plugin.llm.prompts[1].tool_rounds
    assert [r.ok for r in done.results] == [False] * len(HOSTILE)
    assert all(json.loads(r.content)["error"].startswith("refused: ") for r in done.results)
    assert [r.call_id for r in done.results] == [c.id for c in HOSTILE]
    assert owner_of(app).leads() == [] and owner_of(app).questions() == []
    assert owner_of(app).delivery.drain(5) and owner_plugin.notifier.calls == 0


def test_at_most_three_tool_rounds_then_the_calls_are_not_run(build, owner_plugin):
    app = build()
    questions = [call("record_unanswered_question", {"question": f"Question number {n}?"}, f"c{n}") for n in range(5)]
    owner_plugin.llm.steps = [asks(q, text=f"round {n}") for n, q in enumerate(questions)]
    body = chat(app)
    assert len(owner_plugin.llm.prompts) == 4
    assert [len(p.tool_rounds) for p in owner_plugin.llm.prompts] == [0, 1, 2, 3]
    assert body["response"] == "round 0\n\nround 1\n\nround 2\n\nround 3"
    assert sorted(q.question for q in owner_of(app).questions()) == [f"Question number {n}?" for n in range(3)]


def test_each_tool_round_goes_through_the_core_retry(build, owner_plugin, clock):
    app = build()
    contact = call("record_contact", {"email": "jane@example.com"})
    owner_plugin.llm.steps = [asks(contact), BackendUnavailable("blip"), Reply("Got it.")]
    assert chat(app)["response"] == "Got it."
    assert len(owner_plugin.llm.prompts) == 3 and len(clock.sleeps) == 1
    assert len(owner_plugin.llm.prompts[2].tool_rounds) == 1  # the retried round asked the same
    assert len(owner_of(app).leads()) == 1


def test_a_streamed_turn_runs_its_tool_rounds_before_the_first_byte(build, owner_plugin):
    app = build()
    owner_plugin.llm.steps = [asks(call("record_contact", {"email": "jane@example.com"})),
                              Reply("Thanks, I have your address.")]
    response = app.test_client().post("/chat/stream", json={"message": VISITOR, "session_id": SESSION})
    events = parse_events(response.get_data(as_text=True))
    assert "".join(e.json()["text"] for e in events if e.event == "delta") == "Thanks, I have your address."
    assert [e.json()["response"] for e in events if e.event == "done"] == ["Thanks, I have your address."]
    assert len(owner_of(app).leads()) == 1
    assert owner_plugin.notifier.wait_for(1)


def test_a_turn_failing_after_a_tool_round_still_notifies_what_it_recorded(build, owner_plugin):
    app = build(RETRY_MAX_ATTEMPTS=1)
    owner_plugin.llm.steps = [asks(call("record_contact", {"email": "jane@example.com"})), BackendUnavailable("down")]
    response = app.test_client().post("/chat", json={"message": VISITOR, "session_id": SESSION})
    assert response.status_code == 503
    assert [e.email for e in owner_plugin.notifier.wait_for(1)] == ["jane@example.com"]


def test_a_backend_without_tools_is_offered_none_and_detection_records_instead(tmp_path, clock):
    scripted = ScriptedPlugin()
    recorder = OwnerTestPlugin()
    app = create_app({**SCRIPTED_CONFIG, "NOTIFY": "recorder", "DATA_DIR": str(tmp_path)},
                     plugins=[scripted, recorder], entrypoints=False)
    app.test_client().post("/chat", json={"message": VISITOR, "session_id": SESSION})
    assert scripted.llm.prompts[0].tools == ()
    assert app.extensions["twin_server"].owner.delivery.drain(5)
    [lead] = app.extensions["twin_server"].owner.leads()
    assert (lead.email, lead.name) == ("jane@example.com", "Jane Doe")
    assert recorder.notifier.wait_for(1)


def test_owner_events_off_offers_no_tools_and_records_nothing(build, owner_plugin):
    app = build(OWNER_EVENTS=False)
    chat(app)
    assert owner_plugin.llm.prompts[0].tools == ()
    assert owner_of(app).leads() == []


def test_the_tools_tell_the_model_their_limits():
    contact, unanswered = TOOLS
    assert contact.parameters["properties"]["email"]["maxLength"] == 254
    assert contact.parameters["required"] == ["email"] and contact.parameters["additionalProperties"] is False
    assert unanswered.parameters["properties"]["question"]["maxLength"] == 500
