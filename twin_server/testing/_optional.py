"""Checks a backend author switches off with a class attribute, when their backend cannot support them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class OptionalChecks:
    """``optional_checks`` maps a boolean class attribute to the tests that need it.

    When a subclass sets the attribute to False, those tests are removed from
    it: pytest neither runs nor reports them (nothing is skipped). Setting it
    back to True in a further subclass brings them back.
    """

    optional_checks: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for flag, names in cls.optional_checks.items():
            enabled = getattr(cls, flag)
            if not isinstance(enabled, bool):
                raise TypeError(f"{cls.__name__}.{flag} must be True or False, not {enabled!r}")
            for name in names:
                if cls.__dict__.get(name) is not None:
                    continue  # the author's own version of the check
                setattr(cls, name, _inherited(cls, name) if enabled else None)


def _inherited(cls: type, name: str) -> object:
    for base in cls.__mro__[1:]:
        value = base.__dict__.get(name)
        if value is not None:
            return value
    raise AttributeError(name)
