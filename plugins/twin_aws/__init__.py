"""twin-server's AWS plugin: S3 or DynamoDB memory, S3 persona, Secrets Manager, Bedrock.

Registers the storage backends ``s3`` and ``dynamodb``, the persona source ``s3``, the secrets
provider ``aws`` and the language model ``bedrock``. Importing this package
imports no boto3: each module is loaded when its backend is selected, and
without the ``aws`` extra that selection fails at startup with
"install twin-server[aws]".
"""

from twin_server import hookimpl


@hookimpl
def register_storage_backends(register):
    def s3(context):
        from twin_aws.storage import S3ConversationStore

        return S3ConversationStore.from_config(context.config)

    def dynamodb(context):
        from twin_aws.dynamodb import DynamoDBConversationStore

        return DynamoDBConversationStore.from_config(context.config)

    register("s3", s3)
    register("dynamodb", dynamodb)


@hookimpl
def register_persona_sources(register):
    def s3(context):
        from twin_aws.persona import S3PersonaSource

        return S3PersonaSource.from_config(context.config)

    register("s3", s3)


@hookimpl
def register_secret_providers(register):
    def aws(context):
        from twin_aws.secrets import SecretsManagerProvider

        return SecretsManagerProvider.from_config(context.config)

    register("aws", aws)


@hookimpl
def register_llm_backends(register):
    def bedrock(context):
        from twin_aws.bedrock import BedrockLLM

        return BedrockLLM.from_config(context.config)

    register("bedrock", bedrock)
