"""The OpenAI backend's settings, read once through the core's settings reader.

=============================  ==============================  ===========================
setting                        meaning                         default
=============================  ==============================  ===========================
``TWIN_OPENAI_MODEL``          the chat model                  ``gpt-4o-mini``
``TWIN_OPENAI_BASE_URL``       any OpenAI-compatible API       ``https://api.openai.com/v1``
``TWIN_OPENAI_ORGANIZATION``   ``OpenAI-Organization`` header  none
``TWIN_OPENAI_PROJECT``        ``OpenAI-Project`` header       none
``TWIN_OPENAI_TEMPERATURE``    0 to 2                          the server's
``TWIN_OPENAI_MAX_TOKENS``     reply length cap (max_tokens)   the server's
                               (a client's max_tokens is capped by it)
``TWIN_OPENAI_TOOLS``          offer the owner's tools         ``true``
``TWIN_OPENAI_TRANSPORT``      ``builtin`` (our small HTTP/1.1 ``builtin``
                               transport under the SDK) or
                               ``httpx`` (the SDK's own)
``TWIN_LLM_TIMEOUT``           seconds per call, at most       the core's (60)
=============================  ==============================  ===========================
"""

from __future__ import annotations

import dataclasses

from twin_server import Settings
from twin_server.errors import ConfigurationError

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Bounds a call when the core sets no deadline (TWIN_LLM_TIMEOUT=0).
NO_DEADLINE_TIMEOUT = 600.0


@dataclasses.dataclass(frozen=True)
class OpenAISettings:
    model: str = DEFAULT_MODEL
    base_url: str = DEFAULT_BASE_URL
    organization: str | None = None
    project: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = NO_DEADLINE_TIMEOUT
    tools: bool = True
    transport: str = "builtin"

    @classmethod
    def from_settings(cls, settings: Settings) -> "OpenAISettings":
        """Read and check every setting; one ConfigurationError names all the bad ones."""
        problems = settings.problems(
            lambda: _url(settings),
            lambda: settings.get_float("OPENAI_TEMPERATURE", minimum=0, maximum=2),
            lambda: settings.get_int("OPENAI_MAX_TOKENS", minimum=1),
            lambda: settings.get_float("LLM_TIMEOUT", minimum=0),
            lambda: settings.get_bool("OPENAI_TOOLS", True),
            lambda: _transport(settings),
        )
        if problems:
            raise ConfigurationError("llm backend 'openai': " + "; ".join(problems))
        return cls(
            model=_text(settings, "OPENAI_MODEL") or DEFAULT_MODEL,
            base_url=_url(settings),
            organization=_text(settings, "OPENAI_ORGANIZATION"),
            project=_text(settings, "OPENAI_PROJECT"),
            temperature=settings.get_float("OPENAI_TEMPERATURE"),
            max_tokens=settings.get_int("OPENAI_MAX_TOKENS"),
            timeout=settings.get_float("LLM_TIMEOUT") or NO_DEADLINE_TIMEOUT,
            tools=settings.get_bool("OPENAI_TOOLS", True),
            transport=_transport(settings),
        )


def _text(settings: Settings, key: str) -> str | None:
    return (settings.get_str(key) or "").strip() or None


def _url(settings: Settings) -> str:
    url = (_text(settings, "OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"TWIN_OPENAI_BASE_URL must be an http:// or https:// URL, not {url!r}")
    return url


TRANSPORTS = ("builtin", "httpx")


def _transport(settings: Settings) -> str:
    value = (_text(settings, "OPENAI_TRANSPORT") or "builtin").lower()
    if value not in TRANSPORTS:
        raise ConfigurationError(f"TWIN_OPENAI_TRANSPORT must be builtin or httpx, not {value!r}")
    return value
