"""The contract every persona source must keep, as a pytest class to subclass."""

from __future__ import annotations

import pytest

from twin_server import Persona
from twin_server.errors import PersonaError
from twin_server.testing._optional import OptionalChecks
from twin_server.testing.storage import _run_threads

__all__ = ["PersonaSourceContract"]


class PersonaSourceContract(OptionalChecks):
    """Subclass as ``class TestMySource(PersonaSourceContract)`` and give it a ``persona_source`` fixture.

    Overridable: ``supports_broken_check`` (default True) with a ``broken_persona_source``
    fixture, a source whose persona is missing or invalid (e.g. an empty directory or a
    ``facts.json`` that does not parse): its ``load()`` must raise ``PersonaError``, every time.
    Set it to False only when your source cannot be broken (its checks are then left out, not
    skipped).
    """

    optional_checks = {"supports_broken_check": ("test_a_broken_persona_raises_persona_error",)}
    supports_broken_check: bool = True

    @pytest.fixture
    def persona_source(self):
        raise NotImplementedError("a PersonaSourceContract subclass must define a `persona_source` fixture")

    def test_load_returns_a_persona_with_a_name(self, persona_source):
        persona = persona_source.load()
        assert isinstance(persona, Persona)
        assert isinstance(persona.full_name, str) and persona.full_name.strip()

    def test_loads_without_a_change_are_equal(self, persona_source):
        assert persona_source.load() == persona_source.load()

    def test_concurrent_loads_agree(self, persona_source):
        first = persona_source.load()
        seen = []
        errors = _run_threads(8, lambda n: seen.extend(persona_source.load() for _ in range(5)))
        assert errors == []
        assert len(seen) == 40 and all(persona == first for persona in seen)

    def test_a_broken_persona_raises_persona_error(self, request):
        broken = request.getfixturevalue("broken_persona_source")
        for _ in range(2):  # a source that remembers a failure must keep reporting it
            with pytest.raises(PersonaError):
                broken.load()
