"""The app's request class: Flask's, reading its app's body limit without ``current_app``.

Flask's ``Request`` looks its app up through the ``current_app`` proxy each
time it needs the body limit (twice per body read). ``request_class(app)``
makes a subclass bound to one app that reads the same value,
``app.config["MAX_CONTENT_LENGTH"]``, from that app's config itself, so a
change to it after the app is built still counts, and a request's own limit
(``request.max_content_length = n``) still wins.
"""

from __future__ import annotations

from flask import Flask, Request


def request_class(app: Flask) -> type[Request]:
    """A ``Request`` subclass for ``app`` (set as ``app.request_class``)."""
    config = app.config

    class TwinRequest(Request):
        @property
        def max_content_length(self) -> int | None:
            if self._max_content_length is not None:
                return self._max_content_length
            return config["MAX_CONTENT_LENGTH"]  # type: ignore[no-any-return]

        @max_content_length.setter
        def max_content_length(self, value: int | None) -> None:
            self._max_content_length = value

    return TwinRequest
