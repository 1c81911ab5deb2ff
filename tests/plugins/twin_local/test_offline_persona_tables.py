"""The offline model's per-persona tables (source ids, name patterns) follow a new persona version."""

from __future__ import annotations

from twin_local.offline import OfflineLLM
from twin_server import persona_passages
from twin_server.types import Message, Persona, Prompt


def ask(llm, persona, question):
    cited = []
    prompt = Prompt(system="", messages=(Message("user", question),), persona=persona, on_cite=cited.append)
    return str(llm.complete(prompt)), list(cited[-1])


def version(wood_note: str, name: str = "Mira Janssens", heading: str = "What is your favourite wood?") -> Persona:
    return Persona(full_name=name, facts={"full_name": name, "location": "Ghent, Belgium"},
                   notes={"faq": f"## Intro\nI make furniture.\n\n## {heading}\n{wood_note}\n"})


def test_a_reloaded_persona_changes_the_answer_and_its_cited_passages():
    llm = OfflineLLM()
    old = version("Oak, because it ages beautifully.")
    new = version("Walnut, because it is dark and rich.", heading="Favourite wood")
    answer, ids = ask(llm, old, "What's your favourite wood?")
    assert "Oak" in answer and ids == ["faq.md#what-is-your-favourite-wood"]
    answer, ids = ask(llm, new, "What's your favourite wood?")
    assert "Walnut" in answer and "Oak" not in answer
    assert ids == ["faq.md#favourite-wood"] and "Walnut" in persona_passages(new).by_id[ids[0]].text
    # The old version's table answers for the old version still.
    assert ask(llm, old, "What's your favourite wood?")[1] == ["faq.md#what-is-your-favourite-wood"]


def test_a_renamed_persona_is_recognised_by_its_new_name():
    llm = OfflineLLM()
    ask(llm, version("Oak."), "Hi")
    renamed = version("Oak.", name="Lena Maes")
    answer, _ = ask(llm, renamed, "Is this really Lena?")
    assert answer.startswith("I'm a digital twin of Lena Maes"), answer
    answer, _ = ask(llm, renamed, "Is this really Mira?")
    assert not answer.startswith("I'm a digital twin"), answer
