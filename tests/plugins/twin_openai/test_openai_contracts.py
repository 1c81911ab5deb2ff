"""twin_openai's backend passes twin_server.testing's LLM contract: the official SDK over real
HTTP against tests/doubles/fake_openai.py."""

from __future__ import annotations

import pytest

import twin_openai
from tests.doubles.fake_openai import FakeOpenAI
from twin_server import BackendContext
from twin_server.testing import LLMBackendContract

KEY = "sk-test-contracts-0123456789"


def build(server: FakeOpenAI):
    """The backend as the app builds it: through the plugin's registered factory."""
    factories = {}
    twin_openai.register_llm_backends(register=factories.__setitem__)
    context = BackendContext(
        config={"OPENAI_BASE_URL": server.base_url, "LLM_TIMEOUT": 60.0},
        secret={"OPENAI_API_KEY": KEY}.__getitem__,
        name="openai",
        kind="llm",
    )
    return factories["openai"](context)


@pytest.fixture
def server():
    with FakeOpenAI(default_reply="I build underwater robots in Lisbon.") as fake:
        yield fake


class TestOpenAIBackend(LLMBackendContract):
    @pytest.fixture
    def llm(self, server):
        return build(server)

    @pytest.fixture
    def slow_llm(self, server):
        # Each check makes one call; its answer starts long after the prompt's timeout.
        server.reply("Too late.", delay=self.timeout_seconds + self.timeout_slack + 1.0)
        return build(server)

    @pytest.fixture
    def failing_llm(self, server):
        server.error(500, "the model is overloaded", type="server_error")
        return build(server)
