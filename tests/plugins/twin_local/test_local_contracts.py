"""twin_local's backends pass twin_server.testing's contracts, as a third-party backend would."""

from __future__ import annotations

import shutil
import uuid

import pytest

from twin_local.offline import OfflineLLM
from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_local.secrets import EnvSecrets
from twin_local.storage import FilesystemStore
from twin_server.testing import (
    ConversationStoreContract,
    LLMBackendContract,
    PersonaSourceContract,
    SecretsProviderContract,
)


class TestFilesystemStore(ConversationStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        return FilesystemStore(tmp_path / "data")


class TestFilesystemStoreInstances(ConversationStoreContract):
    """Every call through a new instance on the same directory: as gunicorn workers share it."""

    @pytest.fixture
    def store(self, tmp_path):
        return OneInstancePerCall(tmp_path / "data")


class OneInstancePerCall:
    def __init__(self, root):
        self.root = root
        FilesystemStore(root)

    def load(self, session_id, limit=None):
        return FilesystemStore(self.root).load(session_id, limit)

    def append(self, session_id, messages):
        FilesystemStore(self.root).append(session_id, messages)

    def delete(self, session_id):
        return FilesystemStore(self.root).delete(session_id)


class TestOfflineLLM(LLMBackendContract):
    # In-process and instant, with nothing to wait on or to fail: it cannot be made slow or failing.
    supports_timeout_check = False
    supports_failure_check = False

    @pytest.fixture
    def llm(self):
        return OfflineLLM()


class TestFilesystemPersonaSource(PersonaSourceContract):
    @pytest.fixture
    def persona_source(self, tmp_path):
        return FilesystemPersonaSource(shutil.copytree(example_persona_dir(), tmp_path / "persona"))

    @pytest.fixture
    def broken_persona_source(self, tmp_path):
        directory = shutil.copytree(example_persona_dir(), tmp_path / "broken")
        (directory / "facts.json").write_text('{"full_name": "Ada Quill",')
        return FilesystemPersonaSource(directory)


class TestEnvSecrets(SecretsProviderContract):
    @pytest.fixture
    def known_secret(self, monkeypatch):
        value = f"sk-local-{uuid.uuid4().hex}"
        monkeypatch.setenv("CONTRACT_TEST_API_KEY", value)
        return "CONTRACT_TEST_API_KEY", value

    @pytest.fixture
    def secrets(self):
        return EnvSecrets()
