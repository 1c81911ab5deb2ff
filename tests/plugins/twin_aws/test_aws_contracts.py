"""twin_aws's backends pass twin_server.testing's contracts: S3 and Secrets Manager through
moto's server, Bedrock through botocore's Stubber and a socket that never answers."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from tests.doubles.bedrock_stub import answer_every_call
from tests.doubles.moto_server import aws, moto_server, use_test_credentials  # noqa: F401  (fixtures)
from twin_aws.bedrock import BedrockLLM
from twin_aws.dynamodb import DynamoDBConversationStore
from twin_aws.persona import S3PersonaSource
from twin_aws.secrets import SecretsManagerProvider
from twin_aws.storage import S3ConversationStore
from twin_local.persona import example_persona_dir
from twin_server.testing import (
    ConversationStoreContract,
    LLMBackendContract,
    PersonaSourceContract,
    SecretsProviderContract,
)

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"


class TestS3ConversationStore(ConversationStoreContract):
    # moto serves one request at a time (tests/doubles/moto_server.py): fewer writers keep this to seconds.
    concurrency = (4, 6)

    @pytest.fixture
    def store(self, aws):
        # Three messages a chunk: the ten-message history spans sealed chunks and the head.
        config = {"S3_BUCKET": aws.bucket(), "S3_PREFIX": "sessions/", "S3_CHUNK_MESSAGES": 3}
        return S3ConversationStore.from_config(config)


class TestDynamoDBConversationStore(ConversationStoreContract):
    concurrency = (4, 6)  # moto serves one request at a time, and scans the table on each

    @pytest.fixture
    def store(self, aws):
        table = f"contract-{uuid.uuid4().hex[:12]}"
        store = DynamoDBConversationStore.from_config({"DYNAMODB_TABLE": table})
        store.provision()
        return store


def upload_persona(aws, bucket, prefix):
    for path in sorted(Path(example_persona_dir()).iterdir()):
        aws.s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.name}", Body=path.read_bytes())


class TestS3PersonaSource(PersonaSourceContract):
    @pytest.fixture
    def persona_source(self, aws):
        bucket = aws.bucket()
        upload_persona(aws, bucket, "persona")
        return S3PersonaSource.from_config({"PERSONA_S3_BUCKET": bucket})

    @pytest.fixture
    def broken_persona_source(self, aws):
        bucket = aws.bucket()
        upload_persona(aws, bucket, "broken")
        aws.s3.put_object(Bucket=bucket, Key="broken/facts.json", Body=b'{"full_name": "Ada Quill",')
        return S3PersonaSource.from_config({"PERSONA_S3_BUCKET": bucket, "PERSONA_S3_PREFIX": "broken"})


class TestSecretsManagerProvider(SecretsProviderContract):
    @pytest.fixture
    def known_secret(self, aws):
        value = f"sk-aws-{uuid.uuid4().hex}"
        aws.secretsmanager.create_secret(Name="twin/CONTRACT_API_KEY", SecretString=value)
        return "CONTRACT_API_KEY", value

    @pytest.fixture
    def secrets(self, aws):
        return SecretsManagerProvider.from_config({})


@pytest.fixture
def unanswering_endpoint():
    """A TCP port that takes connections (the kernel's backlog) and never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


class TestBedrockLLM(LLMBackendContract):
    @pytest.fixture
    def llm(self, monkeypatch):
        use_test_credentials(monkeypatch)  # any call that escapes the Stubber fails at 127.0.0.1:9
        llm = BedrockLLM.from_config({"BEDROCK_MODEL_ID": CLAUDE})
        answer_every_call(llm.client, text="I build underwater robots in Lisbon.")
        return llm

    @pytest.fixture
    def slow_llm(self, monkeypatch, unanswering_endpoint):
        use_test_credentials(monkeypatch, unanswering_endpoint)
        # Bedrock bounds a call by its client's socket timeout (TWIN_LLM_TIMEOUT), not by prompt.timeout:
        # built with a longer TWIN_LLM_TIMEOUT than the prompt's timeout, it fails this check.
        return BedrockLLM.from_config({"BEDROCK_MODEL_ID": CLAUDE, "LLM_TIMEOUT": self.timeout_seconds})

    @pytest.fixture
    def failing_llm(self, monkeypatch):
        use_test_credentials(monkeypatch)
        llm = BedrockLLM.from_config({"BEDROCK_MODEL_ID": CLAUDE})
        answer_every_call(llm.client, error=("InternalServerException", 500))
        return llm
