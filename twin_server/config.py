"""The one config reader: typed reads of the app config, and the defaults of every core setting.

Config keys are the environment names without ``TWIN_`` (``TWIN_DATA_DIR`` →
``DATA_DIR``); Flask's ``from_prefixed_env`` JSON-decodes values that parse,
so a setting may arrive as a string, a number or a boolean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twin_server.errors import ConfigurationError

__all__ = ["DEFAULTS", "Settings", "get_bool", "get_float", "get_int", "get_list", "get_str"]

#: Core settings and their defaults (plugins document their own). The backend selectors and
#: their timeouts come from the table of backend kinds (``twin_server.backends.kinds``).
DEFAULTS: dict[str, Any] = {
    "HISTORY_WINDOW": 20,
    "MAX_MESSAGE_CHARS": 4000,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "CONTEXT_TOKENS": 8000,
    "KNOWLEDGE_SHARE": 0.5,
    "SUMMARY_EVERY": 6,
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _missing(config: Mapping[str, Any], key: str, default: Any) -> Any:
    return config.get(key, DEFAULTS.get(key, default))


def get_str(config: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = _missing(config, key, default)
    return None if value is None else str(value)


def _number(
    config: Mapping[str, Any], key: str, default: Any, minimum: Any, maximum: Any, convert: type, noun: str
) -> Any:
    value = _missing(config, key, default)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        number = convert(str(value).strip())
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("not finite")
    except ValueError:
        raise ConfigurationError(f"TWIN_{key} must be {noun}, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"TWIN_{key} must be at least {minimum:g}, not {number:g}")
    if maximum is not None and number > maximum:
        raise ConfigurationError(f"TWIN_{key} must be at most {maximum:g}, not {number:g}")
    return number


def get_int(
    config: Mapping[str, Any], key: str, default: int | None = None, *, minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    return _number(config, key, default, minimum, maximum, int, "a whole number")


def get_float(
    config: Mapping[str, Any], key: str, default: float | None = None, *, minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    return _number(config, key, default, minimum, maximum, float, "a number")


def get_bool(config: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = _missing(config, key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"TWIN_{key} must be true or false, not {value!r}")


def get_list(config: Mapping[str, Any], key: str) -> list[str]:
    """A comma-separated setting (or a JSON list) as a list of non-empty strings."""
    value = _missing(config, key, None)
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


class Settings:
    """A read-only view of the app config with typed getters, for the core and for plugins.

    ``context.settings.get_int("S3_CHUNK_MESSAGES", default=50, minimum=1)`` reads
    ``TWIN_S3_CHUNK_MESSAGES``; a bad value raises ``ConfigurationError`` with the
    same wording everywhere ("TWIN_S3_CHUNK_MESSAGES must be a whole number, not 'x'").
    """

    __slots__ = ("config",)

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    def __contains__(self, key: str) -> bool:
        return key in self.config

    def get_str(self, key: str, default: str | None = None) -> str | None:
        return get_str(self.config, key, default)

    def get_int(
        self, key: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        return get_int(self.config, key, default, minimum=minimum, maximum=maximum)

    def get_float(
        self, key: str, default: float | None = None, *, minimum: float | None = None, maximum: float | None = None
    ) -> float | None:
        return get_float(self.config, key, default, minimum=minimum, maximum=maximum)

    def problems(self, *reads: Callable[[], object]) -> list[str]:
        """Run every read and collect the messages of those that fail, so a start lists them all."""
        found = []
        for read in reads:
            try:
                read()
            except ConfigurationError as exc:
                found.append(str(exc))
        return found

    def get_bool(self, key: str, default: bool = False) -> bool:
        return get_bool(self.config, key, default)

    def get_list(self, key: str) -> list[str]:
        return get_list(self.config, key)
