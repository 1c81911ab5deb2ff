"""The OpenAI-compatible API under ``/v1`` (serving OpenAI's protocol; calling OpenAI is ``twin_openai``)."""

from twin_server.http.openai.routes import install

__all__ = ["install"]
