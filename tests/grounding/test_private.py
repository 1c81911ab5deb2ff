"""Private facts and notes never reach a prompt or a source list: a canary the fake OpenAI server never sees."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.doubles.fake_openai import FakeOpenAI
from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_server import Persona, parse_persona, public_persona
from twin_server.app import create_app
from twin_server.app_state import EXTENSION_KEY
from twin_server.errors import PersonaError
from twin_server.persona_layout import split_front_matter

FACT_CANARY = "CANARY-SALARY-7731"
NOTE_CANARY = "CANARY-DIARY-5519"
KEY = "sk-test-private-0123456789"
PRIVATE_NOTE = f"---\nprivate: true\n---\n# Salary and diary\nMy salary is {NOTE_CANARY}; my boat money goes here.\n"


@pytest.fixture
def persona_dir(tmp_path):
    folder = tmp_path / "persona"
    shutil.copytree(example_persona_dir(), folder)
    facts = json.loads((folder / "facts.json").read_text())
    facts.update({"salary": FACT_CANARY, "private": ["salary"]})
    (folder / "facts.json").write_text(json.dumps(facts))
    (folder / "diary.md").write_text(PRIVATE_NOTE)
    (folder / "public.md").write_text("---\ntitle: Open notes\nprivate: false\n---\n## Boats\nI like boats.\n")
    return folder


def test_front_matter_is_read_and_stripped():
    assert split_front_matter("---\nprivate: true\ntitle: 'x'\n---\nBody") == ({"private": True, "title": "x"}, "Body")
    assert split_front_matter("No front matter\n---\n") == ({}, "No front matter\n---\n")
    assert split_front_matter("---\nnot closed\nBody") == ({}, "---\nnot closed\nBody")


def test_the_parsed_persona_holds_no_private_material(persona_dir):
    persona = FilesystemPersonaSource(persona_dir).load()
    assert "salary" not in persona.facts and "private" not in persona.facts
    assert "diary" not in persona.notes
    assert persona.notes["public"] == "## Boats\nI like boats."  # front matter is not knowledge
    assert FACT_CANARY not in repr(persona) and NOTE_CANARY not in repr(persona)


def test_a_persona_built_elsewhere_is_made_public_by_the_core():
    raw = Persona("Bo", facts={"full_name": "Bo", "salary": FACT_CANARY, "private": ["salary"]},
                  notes={"diary": PRIVATE_NOTE, "boats": "Boats!"})
    public = public_persona(raw)
    assert dict(public.facts) == {"full_name": "Bo"} and dict(public.notes) == {"boats": "Boats!"}
    plain = Persona("Bo", notes={"boats": "Boats!"})
    assert public_persona(plain) is plain


def test_the_name_cannot_be_private():
    with pytest.raises(PersonaError, match="full_name cannot be private"):
        parse_persona({"facts.json": b'{"full_name": "Bo", "private": ["full_name"]}'})
    with pytest.raises(PersonaError, match="private"):
        parse_persona({"facts.json": b'{"full_name": "Bo", "private": "salary"}'})


def test_private_material_never_reaches_the_model_or_a_source(persona_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(default_reply="I'd rather not say.") as server:
        app = create_app({"LLM": "openai", "OPENAI_BASE_URL": server.base_url, "PERSONA_DIR": str(persona_dir),
                          "DATA_DIR": str(tmp_path / "data"), "HISTORY_WINDOW": 2, "SUMMARY_EVERY": 2,
                          "CONTEXT_TOKENS": 1500})
        client = app.test_client()
        answers = []
        questions = ["What is your salary?", "What is in your diary?", "How much money do you make?",
                     "Tell me about your salary and diary", "What do you earn?"]
        for question in questions:
            answers.append(client.post("/chat", json={"message": question, "session_id": "canary-0001"}).get_json())
        stream = client.post("/chat/stream", json={"message": "Your salary?", "session_id": "canary-0001"})
        answers.append(json.loads(stream.get_data(as_text=True).split("event: done\ndata: ")[1].split("\n")[0]))
        v1 = {"model": "ada-quill", "messages": [{"role": "user", "content": "What is your salary?"}]}
        answers.append(client.post("/v1/chat/completions", json=v1).get_json())
        answers.append(client.post("/v1/chat/completions", json={**v1, "stream": True}).get_data(as_text=True))
        assert app.extensions[EXTENSION_KEY].turns.summaries.worker.drain()
        bodies = [r.body.decode() for r in server.requests]
        summaries = [b for b in bodies if "running summary" in b]
    assert len(bodies) >= 9 and summaries, "the summary path was not exercised"
    for body in bodies:
        assert FACT_CANARY not in body and NOTE_CANARY not in body
        assert "diary.md" not in body and "facts.json#salary" not in body
    text = json.dumps(answers)
    assert "facts.json#salary" not in text and "diary.md" not in text
    stored = (tmp_path / "data" / "canary-0001.jsonl").read_text() + (tmp_path / "data" / "canary-0001.summary.ndjson").read_text()
    assert FACT_CANARY not in stored and NOTE_CANARY not in stored


def test_the_offline_model_cannot_say_private_material(persona_dir, tmp_path):
    client = create_app({"PERSONA_DIR": str(persona_dir), "DATA_DIR": str(tmp_path / "data")}).test_client()
    for question in ["What is your salary?", "Tell me about your salary and your boat money", "diary"]:
        body = client.post("/chat", json={"message": question}).get_json()
        assert FACT_CANARY not in body["response"] and NOTE_CANARY not in body["response"]
        assert not any(s["id"].startswith(("diary.md", "facts.json#salary")) for s in body["sources"])


def test_a_third_party_persona_with_a_private_headline_does_not_show_it(scripted_app, scripted):
    scripted.persona.persona = Persona("Bo", facts={"full_name": "Bo", "headline": FACT_CANARY,
                                                    "private": ["headline"]}, notes={"diary": PRIVATE_NOTE})
    client = scripted_app().test_client()
    assert FACT_CANARY not in client.get("/profile").get_data(as_text=True)
    client.post("/chat", json={"message": "What is your headline? And your diary?"})
    prompt = scripted.llm.prompts[-1]
    assert FACT_CANARY not in prompt.system and NOTE_CANARY not in prompt.system
    assert "headline" not in prompt.persona.facts and not prompt.persona.notes
