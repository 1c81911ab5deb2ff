"""The OpenAI backend's settings, read once from the app config (keys without ``TWIN_``).

=============================  ==============================  ===========================
setting                        meaning                         default
=============================  ==============================  ===========================
``TWIN_OPENAI_MODEL``          the chat model                  ``gpt-4o-mini``
``TWIN_OPENAI_BASE_URL``       any OpenAI-compatible API       ``https://api.openai.com/v1``
``TWIN_OPENAI_ORGANIZATION``   ``OpenAI-Organization`` header  none
``TWIN_OPENAI_PROJECT``        ``OpenAI-Project`` header       none
``TWIN_OPENAI_TEMPERATURE``    0 to 2                          the server's
``TWIN_OPENAI_MAX_TOKENS``     reply length cap (max_tokens)   the server's
``TWIN_LLM_TIMEOUT``           seconds per call, at most       60
=============================  ==============================  ===========================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from twin_server.errors import ConfigurationError

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class OpenAISettings:
    model: str = DEFAULT_MODEL
    base_url: str = DEFAULT_BASE_URL
    organization: str | None = None
    project: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "OpenAISettings":
        """Read and check every setting; one ConfigurationError names all the bad ones."""
        problems: list[str] = []

        def read(key: str, parse, default=None):
            raw = config.get(key)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                return default
            try:
                return parse(raw)
            except (TypeError, ValueError) as exc:
                problems.append(f"TWIN_{key} {exc}, not {raw!r}")
                return default

        settings = cls(
            model=read("OPENAI_MODEL", _text, DEFAULT_MODEL),
            base_url=read("OPENAI_BASE_URL", _url, DEFAULT_BASE_URL),
            organization=read("OPENAI_ORGANIZATION", _text),
            project=read("OPENAI_PROJECT", _text),
            temperature=read("OPENAI_TEMPERATURE", _temperature),
            max_tokens=read("OPENAI_MAX_TOKENS", _max_tokens),
            timeout=read("LLM_TIMEOUT", _timeout, DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
        )
        if problems:
            raise ConfigurationError("llm backend 'openai': " + "; ".join(problems))
        return settings


def _text(raw: Any) -> str:
    return str(raw).strip()


def _url(raw: Any) -> str:
    url = str(raw).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return url


def _number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("must be a number")
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _temperature(raw: Any) -> float:
    value = _number(raw)
    if not 0 <= value <= 2:
        raise ValueError("must be between 0 and 2")
    return value


def _max_tokens(raw: Any) -> int:
    value = _number(raw)
    if value != int(value) or value < 1:
        raise ValueError("must be a whole number of at least 1")
    return int(value)


def _timeout(raw: Any) -> float:
    """Seconds; 0 means the core sets no deadline, and each call is then bounded by the default."""
    value = _number(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value
