"""The app's request hooks, run by one Flask hook each: before, after and teardown.

Flask looks up and wraps every registered hook on every request (``ensure_sync``
asks ``inspect`` whether each is a coroutine function); the core and its
optional parts register about fifteen, so that walk was a visible share of a
chat's cost. ``compose`` folds each list into one function once the app is
built, with Flask's own order and semantics: before-hooks in registration
order until one returns a response, after-hooks in reverse, each given the
response the later one returned, and teardowns in reverse. Hooks registered
later (a plugin at run time, a test) still run, around the composed ones, in
order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Response


def compose(app: Flask) -> None:
    """Replace the app-wide (not blueprint) before, after and teardown hooks with one composed hook each."""
    before = [app.ensure_sync(f) for f in app.before_request_funcs.get(None, [])]
    after = [app.ensure_sync(f) for f in reversed(app.after_request_funcs.get(None, []))]
    teardown = [app.ensure_sync(f) for f in reversed(app.teardown_request_funcs.get(None, []))]
    if len(before) > 1:
        app.before_request_funcs[None] = [_before(before)]
    if len(after) > 1:
        app.after_request_funcs[None] = [_after(after)]
    if len(teardown) > 1:
        app.teardown_request_funcs[None] = [_teardown(teardown)]


def _before(hooks: list[Callable[[], Any]]) -> Callable[[], Any]:
    def before_request() -> Any:
        for hook in hooks:
            answer = hook()
            if answer is not None:
                return answer
        return None

    return before_request


def _after(hooks: list[Callable[[Response], Response]]) -> Callable[[Response], Response]:
    def after_request(response: Response) -> Response:
        for hook in hooks:
            response = hook(response)
        return response

    return after_request


def _teardown(hooks: list[Callable[[BaseException | None], None]]) -> Callable[[BaseException | None], None]:
    def teardown_request(exc: BaseException | None) -> None:
        for hook in hooks:
            hook(exc)

    return teardown_request
