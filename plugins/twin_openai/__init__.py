"""twin-server's OpenAI plugin: the ``openai`` language model, for any OpenAI-compatible API.

Registers the LLM backend ``openai`` (``TWIN_LLM=openai``) and its two errors.
The ``openai`` package is imported only when that backend is built, so this
module costs nothing for apps that use another model. Settings: see
``twin_openai.config``; the API key is the secret ``OPENAI_API_KEY``.
"""

from twin_server import hookimpl
from twin_server.errors import ConfigurationError

MISSING_SDK = (
    "llm backend 'openai' needs the openai package, which cannot be imported ({error}); "
    "install twin-server[openai]: pip install 'twin-server[openai]'"
)


@hookimpl
def register_llm_backends(register):
    def build_openai(context):
        try:
            from twin_openai.backend import OpenAIBackend
        except ImportError as exc:
            raise ConfigurationError(MISSING_SDK.format(error=exc)) from exc
        return OpenAIBackend.from_context(context)

    register("openai", build_openai)


@hookimpl
def register_errors(register):
    from twin_openai.errors import REGISTERED

    for exc_class, status, title in REGISTERED:
        register(exc_class, status, title)
