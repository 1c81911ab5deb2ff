"""Contract tests for backend authors: subclass one, give it a fixture, run pytest.

Each contract is a pytest class holding the checks every backend of its kind must
pass, written against the protocols alone. twin-server's own backends run the same
classes, so the kit cannot fall behind what the core relies on::

    import pytest
    from twin_server.testing import ConversationStoreContract

    class TestMyStore(ConversationStoreContract):
        @pytest.fixture
        def store(self):
            return MyStore()

======================================  ==========================================================
contract                                fixtures to define (optional ones in brackets)
======================================  ==========================================================
``ConversationStoreContract``           ``store`` [``make_session_id``]
``LLMBackendContract``                  ``llm``, ``slow_llm``, ``failing_llm`` [``make_prompt``]
``PersonaSourceContract``               ``persona_source``, ``broken_persona_source``
``SecretsProviderContract``             ``secrets``, ``known_secret`` [``unknown_secret_name``]
``SummaryStoreContract``                ``store`` (one with ``load_summary``/``save_summary``)
======================================  ==========================================================

Each class's docstring lists the class attributes that tune it (``concurrency`` for a slow
store, ``supports_timeout_check = False`` for an LLM that cannot be made slow, ...). The kit
needs only pytest and ``twin_server``'s value types and errors.
"""

import pytest

# Before the contracts are imported, so a failed check shows the values it compared.
pytest.register_assert_rewrite(*(f"twin_server.testing.{name}" for name in ("llm", "persona", "secrets", "storage",
                                                                                   "summaries")))

from twin_server.testing.llm import LLMBackendContract
from twin_server.testing.persona import PersonaSourceContract
from twin_server.testing.secrets import SecretsProviderContract
from twin_server.testing.storage import ConversationStoreContract, turn_problems
from twin_server.testing.summaries import SummaryStoreContract

__all__ = [
    "ConversationStoreContract",
    "LLMBackendContract",
    "PersonaSourceContract",
    "SecretsProviderContract",
    "SummaryStoreContract",
    "turn_problems",
]
