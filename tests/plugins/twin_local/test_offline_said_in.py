"""Which persona passages a reply says (``PersonaIndex.said_in``): the same as finding each passage in it.

``said_in`` looks only for the passages whose rarest inner word the text has; the
plain search below, every passage in either of the ways it is said, is the oracle.
Texts are made of passages (whole, cut, run together, said after another project)
and the words around them, for personas whose passages hold one another.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin_local.index import PersonaIndex
from twin_local.passages import follow_on
from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_server.types import Persona


def _searched(index: PersonaIndex, text: str) -> list[int]:
    found = []
    for passage in index.passages:
        at = text.find(passage.text)
        if at < 0:
            at = text.find(follow_on(passage.text, passage.text))
        if at >= 0:
            found.append((at, passage.order))
    return [order for _, order in sorted(found)]


NESTED = Persona(
    full_name="Kai Ober",
    facts={
        "full_name": "Kai Ober",
        "location": "Oslo",
        "projects": [{"name": "Fjord", "description": "a boat"}, {"name": "Fjord boat", "description": "a boat too"},
                     {"name": "Tern", "description": "tern"}],
        "skills": ["boats"],
    },
    summary="I build boats.\n\nI build boats. In Oslo.\n\nI'm based in Oslo.\n\nBoats.",
    notes={"faq": "## Boats?\nOne of my projects is Tern: tern.\n\nAnother is Tern: tern. Yes really.\n\nI.\n"},
)
# One project: the words only its "One of my projects is ..." form has are its rarest, and no marker.
SOLO = Persona(full_name="Lin Voss",
               facts={"full_name": "Lin Voss", "projects": [{"name": "Kelp", "description": "a sensor"}]})
PERSONAS = [FilesystemPersonaSource(example_persona_dir()).load(), NESTED, SOLO]
INDEXES = [PersonaIndex(persona) for persona in PERSONAS]
IDS = ["ada", "nested", "solo"]


def _pieces(index: PersonaIndex) -> st.SearchStrategy[str]:
    texts = [p.text for p in index.passages]
    spoken = texts + [follow_on(t, t) for t in texts]
    cut = st.builds(lambda t, a, b: t[min(a, b):max(a, b)], st.sampled_from(spoken),
                    st.integers(0, 400), st.integers(0, 400))
    return st.one_of(st.sampled_from(spoken), cut, st.sampled_from(["", " ", "\n\n", "Hi! ", "x", ".", "\t"]),
                     st.text(max_size=4))


@pytest.mark.parametrize("index", INDEXES, ids=IDS)
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_said_in_finds_what_a_search_finds(index: PersonaIndex, data: st.DataObject) -> None:
    text = "".join(data.draw(st.lists(_pieces(index), max_size=6)))
    assert [p.order for p in index.said_in(text)] == _searched(index, text)


@pytest.mark.parametrize("index", INDEXES, ids=IDS)
def test_said_in_every_passage_and_every_pair(index: PersonaIndex) -> None:
    texts = [p.text for p in index.passages]
    for a in texts:
        for joined in [a, follow_on(a, a), "Hi! " + a] + [a + sep + follow_on(a, b) for b in texts for sep in " \n"]:
            assert [p.order for p in index.said_in(joined)] == _searched(index, joined), joined


@pytest.mark.parametrize("index", INDEXES, ids=IDS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_said_any_finds_what_a_search_finds(index: PersonaIndex, data: st.DataObject) -> None:
    texts = ["".join(data.draw(st.lists(_pieces(index), max_size=4))) for _ in range(data.draw(st.integers(0, 3)))]
    want = {p.text for p in index.passages for text in texts
            if p.text in text or follow_on(p.text, p.text) in text}
    assert index.said_any(texts) == want
