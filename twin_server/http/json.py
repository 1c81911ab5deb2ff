"""Flask's JSON through orjson: every response body and every request body the app reads.

orjson encodes and decodes in a tenth of the standard library's time (a chat
response and its request body are two of the few JSON documents a turn
handles). What it does differently is kept as Flask has it: keys sorted,
Flask's ``default`` for dates, dataclasses and decimals, and anything orjson
refuses or would read differently (an integer beyond 64 bits, which it reads as
a float; a lone surrogate in a ``\\ud800`` escape) handed to the standard
library, so the API reads and answers what it did.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Flask
from flask.json.provider import DefaultJSONProvider

_DUMP = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME \
    | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS

#: Nineteen digits in a row may be an integer beyond 64 bits (or a long fraction): the standard library reads those.
_LONG_NUMBER_TEXT, _LONG_NUMBER_BYTES = re.compile(r"[0-9]{19}"), re.compile(rb"[0-9]{19}")


class OrjsonProvider(DefaultJSONProvider):
    """``DefaultJSONProvider``'s behaviour, orjson's speed."""

    ensure_ascii = False  # UTF-8 as orjson writes it (the standard library's fallback escapes: ``_stdlib``)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs.keys() - {"separators"} or not self.sort_keys or self.ensure_ascii:
            return self._stdlib(obj, **kwargs)  # pretty-printing, or settings orjson cannot follow
        try:
            return orjson.dumps(obj, default=self.default, option=_DUMP).decode()
        except (orjson.JSONEncodeError, TypeError):
            return self._stdlib(obj, **kwargs)  # the standard library's answer, or its error

    def _stdlib(self, obj: Any, **kwargs: Any) -> str:
        # Escaped: a lone surrogate (a key a client sent as "\ud800", which orjson refuses) can only be written
        # as an escape; raw, it would fail when the response is encoded to UTF-8.
        return super().dumps(obj, **{"ensure_ascii": True, **kwargs})

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        long_number = _LONG_NUMBER_TEXT if isinstance(s, str) else _LONG_NUMBER_BYTES  # bytes, bytearray
        if kwargs or long_number.search(s):
            return super().loads(s, **kwargs)
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return super().loads(s)  # what orjson refuses but JSON allows, or the standard library's error


def install(app: Flask) -> None:
    app.json = OrjsonProvider(app)
