"""twin-server's local plugin: runs a whole twin on one machine, offline, with no keys.

Registers the filesystem conversation store, the filesystem persona source,
the environment secrets provider and the offline language model. Each module
is imported only when its backend is selected.
"""

from twin_server import hookimpl


@hookimpl
def register_storage_backends(register):
    def filesystem(context):
        from twin_local.storage import FilesystemStore

        return FilesystemStore.from_config(context.config)

    register("filesystem", filesystem)


@hookimpl
def register_persona_sources(register):
    def filesystem(context):
        from twin_local.persona import FilesystemPersonaSource

        return FilesystemPersonaSource.from_config(context.config)

    register("filesystem", filesystem)


@hookimpl
def register_secret_providers(register):
    def env(context):
        from twin_local.secrets import EnvSecrets

        return EnvSecrets()

    register("env", env)


@hookimpl
def register_llm_backends(register):
    def offline(context):
        from twin_local.offline import OfflineLLM

        return OfflineLLM.from_config(context.config)

    register("offline", offline)
