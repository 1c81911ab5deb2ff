"""The persona layout parser and the filesystem persona source."""

from __future__ import annotations

import io
import json
import logging
import os
import sys

import pytest

import twin_local
import twin_local.persona as fs_persona
from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_server import BackendContext, PersonaSource
from twin_server.backends.registry import check_protocol
from twin_server.errors import ConfigurationError, PersonaError
from twin_server.persona_layout import PERSONA_FILES, is_persona_file, parse_persona, select_persona_files
from twin_server.types import Persona


def facts_bytes(**facts) -> bytes:
    return json.dumps({"full_name": "Test Person", **facts}).encode()


def make_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text``, made with pypdf itself."""
    from pypdf import PdfWriter
    from pypdf.generic import ContentStream, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=400, height=200)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    content = ContentStream(None, None)
    content.set_data(f"BT /F1 12 Tf 20 150 Td ({text}) Tj ET".encode("latin-1"))
    page.replace_contents(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- parse_persona ----------------------------------------------------------


def test_parses_every_file_of_the_layout():
    persona = parse_persona(
        {
            "facts.json": facts_bytes(location="Oslo", skills=["Go", "SQL"]),
            "summary.txt": "I build things.\n".encode(),
            "style.txt": b"\xef\xbb\xbfShort and warm.",  # a BOM is tolerated
            "faq.md": b"# FAQ\nYes.",
            "projects.md": b"  ",  # blank notes are dropped
            "README.txt": b"not part of the layout",
        }
    )
    assert isinstance(persona, Persona)
    assert persona.full_name == "Test Person"
    assert persona.facts["location"] == "Oslo"
    assert persona.facts["skills"] == ["Go", "SQL"]
    assert persona.summary == "I build things."
    assert persona.style == "Short and warm."
    assert dict(persona.notes) == {"faq": "# FAQ\nYes."}
    assert persona.linkedin == ""


def test_unknown_keys_are_kept_in_file_order_everywhere():
    raw = {
        "pets": ["a cat"],
        "full_name": "  Test Person  ",
        "experience": [{"role": "Cook", "company": "Inn", "years": 2020, "team_size": 4}],
        "projects": [{"name": "Soup", "stars": 3}],
        "languages": ["English", {"name": "French", "level": "fluent"}],
        "website": None,
    }
    persona = parse_persona({"facts.json": json.dumps(raw).encode()})
    assert persona.full_name == "Test Person"
    assert list(persona.facts) == ["pets", "full_name", "experience", "projects", "languages", "website"]
    assert persona.facts["pets"] == ["a cat"]
    assert persona.facts["experience"][0]["team_size"] == 4
    assert persona.facts["projects"][0]["stars"] == 3
    assert persona.facts["languages"][1] == {"name": "French", "level": "fluent"}


@pytest.mark.parametrize(
    "facts, expected",
    [
        ({"headline": "x"}, "full_name: Missing data for required field"),
        ({"full_name": "   "}, "full_name: must be a non-empty string"),
        ({"full_name": 42}, "full_name: Not a valid string"),
        ({"full_name": "A", "skills": "Go"}, "skills: Not a valid list"),
        ({"full_name": "A", "experience": [{"role": 3}]}, "experience.0.role: Not a valid string"),
        ({"full_name": "A", "projects": [{"description": "no name"}]}, "projects.0.name: Missing data"),
        ({"full_name": "A", "languages": [7]}, "languages.0: must be a string or an object"),
    ],
)
def test_invalid_facts_name_the_field(facts, expected):
    with pytest.raises(PersonaError) as info:
        parse_persona({"facts.json": json.dumps(facts).encode()}, source="/srv/persona")
    assert str(info.value).startswith("/srv/persona/facts.json is invalid: ")
    assert expected in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(PersonaError) as info:
        parse_persona({"facts.json": json.dumps({"skills": 1, "interests": [2]}).encode()})
    message = str(info.value)
    assert "full_name" in message and "skills" in message and "interests.0" in message


def test_invalid_json_says_where():
    with pytest.raises(PersonaError, match=r"facts.json is not valid JSON: .* line 1 column 15"):
        parse_persona({"facts.json": b'{"full_name": }'})


@pytest.mark.parametrize("raw", [b"[]", b'"Ada"', b"null"])
def test_facts_must_be_an_object(raw):
    with pytest.raises(PersonaError, match="must hold a JSON object"):
        parse_persona({"facts.json": raw})


def test_missing_facts_file():
    with pytest.raises(PersonaError, match="facts.json is missing"):
        parse_persona({"summary.txt": b"hello"})


def test_text_that_is_not_utf8_is_refused():
    with pytest.raises(PersonaError, match="summary.txt is not UTF-8"):
        parse_persona({"facts.json": facts_bytes(), "summary.txt": b"caf\xe9"})


def test_linkedin_pdf_text_is_extracted():
    pdf = make_pdf("Ten years of building robots")
    persona = parse_persona({"facts.json": facts_bytes(), "linkedin.pdf": pdf})
    assert "Ten years of building robots" in persona.linkedin


def test_a_damaged_pdf_is_a_persona_error():
    with pytest.raises(PersonaError, match="linkedin.pdf cannot be read"):
        parse_persona({"facts.json": facts_bytes(), "linkedin.pdf": b"%PDF-1.4 garbage"})


def test_linkedin_pdf_is_skipped_without_pypdf(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pypdf", None)  # makes `import pypdf` raise ImportError
    with caplog.at_level(logging.WARNING, logger="twin_server.persona"):
        persona = parse_persona({"facts.json": facts_bytes(), "linkedin.pdf": b"%PDF-1.4"})
    assert persona.linkedin == ""
    assert "pypdf is not installed" in caplog.text
    assert "twin-server[pdf]" in caplog.text


def test_layout_file_names():
    assert PERSONA_FILES == {"facts.json", "summary.txt", "style.txt", "linkedin.pdf"}
    for name in ["facts.json", "summary.txt", "style.txt", "linkedin.pdf", "faq.md", "projects.md"]:
        assert is_persona_file(name), name
    for name in ["README.txt", ".hidden.md", ".md", "notes/deep.md", "facts.json.bak", "photo.png", ""]:
        assert not is_persona_file(name), name
    assert select_persona_files(["b.md", "x.txt", "facts.json", "a.md", "a.md"]) == ["a.md", "b.md", "facts.json"]


# --- FilesystemPersonaSource ------------------------------------------------


@pytest.fixture
def persona_dir(tmp_path):
    (tmp_path / "facts.json").write_bytes(facts_bytes(location="Oslo"))
    (tmp_path / "summary.txt").write_text("First summary.")
    return tmp_path


@pytest.fixture
def parse_calls(monkeypatch):
    calls = []
    real = fs_persona.parse_persona

    def counting(files, source=""):
        calls.append(sorted(files))
        return real(files, source=source)

    monkeypatch.setattr(fs_persona, "parse_persona", counting)
    return calls


def bump_mtime(path, seconds=10):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_loads_a_directory(persona_dir):
    persona = FilesystemPersonaSource(persona_dir).load()
    assert persona.full_name == "Test Person"
    assert persona.summary == "First summary."


def test_unchanged_persona_is_parsed_once(persona_dir, parse_calls):
    source = FilesystemPersonaSource(persona_dir)
    first = source.load()
    assert source.load() is first
    assert source.load() is first
    assert len(parse_calls) == 1


def test_an_edit_is_picked_up_without_restart(persona_dir, parse_calls):
    source = FilesystemPersonaSource(persona_dir, reload_seconds=0)
    assert source.load().summary == "First summary."
    (persona_dir / "summary.txt").write_text("A longer, second summary.")
    assert source.load().summary == "A longer, second summary."
    assert len(parse_calls) == 2


def test_a_same_size_edit_is_seen_by_its_mtime(persona_dir, parse_calls):
    source = FilesystemPersonaSource(persona_dir, reload_seconds=0)
    source.load()
    (persona_dir / "summary.txt").write_text("Other summary.")  # same length as "First summary."
    bump_mtime(persona_dir / "summary.txt")
    assert source.load().summary == "Other summary."
    assert len(parse_calls) == 2


def test_notes_added_and_removed_are_seen(persona_dir, parse_calls):
    source = FilesystemPersonaSource(persona_dir, reload_seconds=0)
    assert dict(source.load().notes) == {}
    (persona_dir / "faq.md").write_text("Q and A")
    assert dict(source.load().notes) == {"faq": "Q and A"}
    (persona_dir / "faq.md").unlink()
    assert dict(source.load().notes) == {}
    assert len(parse_calls) == 3


def test_files_outside_the_layout_do_not_cause_a_reparse(persona_dir, parse_calls):
    source = FilesystemPersonaSource(persona_dir)
    source.load()
    (persona_dir / "draft.txt").write_text("scratch")
    (persona_dir / "old").mkdir()
    (persona_dir / "old" / "facts.md").write_text("nested notes are not part of the layout")
    source.load()
    assert parse_calls == [["facts.json", "summary.txt"]]


def test_an_invalid_edit_raises_until_fixed_and_is_parsed_once(persona_dir, parse_calls):
    source = FilesystemPersonaSource(persona_dir, reload_seconds=0)
    source.load()
    (persona_dir / "facts.json").write_text('{"full_name": ""}')
    for _ in range(3):
        with pytest.raises(PersonaError, match="full_name: must be a non-empty string"):
            source.load()
    assert len(parse_calls) == 2  # the broken version was parsed once, not per request
    (persona_dir / "facts.json").write_bytes(facts_bytes(location="Bergen"))
    assert source.load().facts["location"] == "Bergen"


class StepClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_edit_is_served_after_the_reload_interval_not_before(persona_dir, parse_calls, monkeypatch):
    clock = StepClock()
    source = FilesystemPersonaSource(persona_dir, reload_seconds=2, clock=clock)
    scans = []
    real_scan = source._scan
    monkeypatch.setattr(source, "_scan", lambda: scans.append(1) or real_scan())
    assert source.load().summary == "First summary."
    (persona_dir / "summary.txt").write_text("A longer, second summary.")
    clock.now += 1.9
    for _ in range(5):
        assert source.load().summary == "First summary."  # within the interval: not even looked at
    assert len(scans) == 1
    clock.now += 0.1
    assert source.load().summary == "A longer, second summary."
    assert len(scans) == 2 and len(parse_calls) == 2


def test_reload_zero_looks_at_the_directory_on_every_load(persona_dir, monkeypatch):
    source = FilesystemPersonaSource(persona_dir, reload_seconds=0, clock=StepClock())
    assert source.load().summary == "First summary."
    (persona_dir / "summary.txt").write_text("Changed at once.")
    assert source.load().summary == "Changed at once."


def test_a_broken_persona_is_retried_on_every_load_and_heals_at_once(persona_dir):
    clock = StepClock()
    (persona_dir / "facts.json").write_text('{"full_name": ""}')
    source = FilesystemPersonaSource(persona_dir, reload_seconds=60, clock=clock)
    with pytest.raises(PersonaError):
        source.load()
    (persona_dir / "facts.json").write_bytes(facts_bytes(location="Bergen"))
    assert source.load().facts["location"] == "Bergen"  # no minute's wait for the fix


def test_reload_interval_setting(persona_dir):
    assert FilesystemPersonaSource.from_config({"PERSONA_DIR": str(persona_dir)}).reload_seconds == 2
    source = FilesystemPersonaSource.from_config({"PERSONA_DIR": str(persona_dir), "PERSONA_RELOAD_SECONDS": "0"})
    assert source.reload_seconds == 0
    with pytest.raises(ConfigurationError, match="TWIN_PERSONA_RELOAD_SECONDS"):
        FilesystemPersonaSource.from_config({"PERSONA_DIR": str(persona_dir), "PERSONA_RELOAD_SECONDS": "-1"})


def test_the_app_serves_an_edited_persona_at_once_with_reload_zero(local_app, tmp_path):
    persona = tmp_path / "persona"
    persona.mkdir()
    (persona / "facts.json").write_bytes(facts_bytes(location="Oslo"))
    client = local_app(PERSONA_DIR=str(persona), PERSONA_RELOAD_SECONDS=0).test_client()
    assert "Oslo" in client.post("/chat", json={"message": "Where do you live?"}).get_json()["response"]
    (persona / "facts.json").write_bytes(facts_bytes(location="Bergen"))
    assert "Bergen" in client.post("/chat", json={"message": "Where do you live?"}).get_json()["response"]


def test_missing_directory_names_the_setting(tmp_path):
    source = FilesystemPersonaSource(tmp_path / "nowhere")
    with pytest.raises(PersonaError) as info:
        source.load()
    assert "TWIN_PERSONA_DIR" in str(info.value)
    assert "does not exist" in str(info.value)


def test_a_file_instead_of_a_directory(tmp_path):
    path = tmp_path / "facts.json"
    path.write_bytes(facts_bytes())
    with pytest.raises(PersonaError, match="TWIN_PERSONA_DIR must name a directory"):
        FilesystemPersonaSource(path).load()


def test_empty_directory_misses_facts(tmp_path):
    with pytest.raises(PersonaError, match="facts.json is missing"):
        FilesystemPersonaSource(tmp_path).load()


def test_from_config_uses_persona_dir(persona_dir):
    source = FilesystemPersonaSource.from_config({"PERSONA_DIR": str(persona_dir)})
    assert source.directory == str(persona_dir)
    assert source.load().full_name == "Test Person"


@pytest.mark.parametrize("config", [{}, {"PERSONA_DIR": ""}, {"PERSONA_DIR": None}])
def test_from_config_defaults_to_the_bundled_example(config):
    source = FilesystemPersonaSource.from_config(config)
    assert source.directory == os.path.abspath(example_persona_dir())
    persona = source.load()
    assert persona.full_name == "Ada Quill"


def test_the_example_persona_is_rich():
    persona = FilesystemPersonaSource(example_persona_dir()).load()
    facts = persona.facts
    for key in ["headline", "current_role", "company", "location", "email", "website", "skills", "languages",
                "education", "interests"]:
        assert facts.get(key), key
    assert 3 <= len(facts["experience"]) <= 4
    assert len(facts["projects"]) == 3
    assert facts["email"].endswith("@example.com")
    assert "example.com" in facts["website"]
    assert persona.summary.count("\n\n") >= 2
    assert persona.style
    assert set(persona.notes) == {"faq", "projects"}


def test_registered_by_the_local_plugin(persona_dir):
    registered = {}
    twin_local.register_persona_sources(lambda name, factory: registered.setdefault(name, factory))
    context = BackendContext(config={"PERSONA_DIR": str(persona_dir)}, secret=lambda name: "")
    source = registered["filesystem"](context)
    assert isinstance(source, FilesystemPersonaSource)
    assert isinstance(source, PersonaSource)
    check_protocol("persona", "filesystem", source)
