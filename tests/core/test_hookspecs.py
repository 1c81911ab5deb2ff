"""Every hook is documented (when it is called, what it returns) and really called by the core."""

import inspect

import pytest

from tests.doubles.scripted import SCRIPTED_CONFIG, ScriptedPlugin
from twin_server import hookimpl
from twin_server.app import create_app
from twin_server import hookspecs

HOOKS = [name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "twin_server_spec")]


def test_there_are_hooks():
    assert {"register_storage_backends", "register_llm_backends", "register_errors", "retry_policy", "startup"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and doc.startswith("Called"), f"{hook}: say when it is called"
    assert "Return" in doc, f"{hook}: say what it returns"


class EveryHook:
    """Implements every hook and records each call (a new hook needs a method here: the test below says so)."""

    __name__ = "every-hook"

    def __init__(self) -> None:
        self.calls: dict[str, list[dict]] = {}

    def _record(self, hook, **arguments):
        self.calls.setdefault(hook, []).append(arguments)

    @hookimpl
    def register_storage_backends(self, register):
        self._record("register_storage_backends", register=register)

    @hookimpl
    def register_persona_sources(self, register):
        self._record("register_persona_sources", register=register)

    @hookimpl
    def register_secret_providers(self, register):
        self._record("register_secret_providers", register=register)

    @hookimpl
    def register_llm_backends(self, register):
        self._record("register_llm_backends", register=register)

    @hookimpl
    def register_notifiers(self, register):
        self._record("register_notifiers", register=register)

    @hookimpl
    def register_errors(self, register):
        self._record("register_errors", register=register)

    @hookimpl
    def retry_policy(self, operation):
        self._record("retry_policy", operation=operation)

    @hookimpl
    def startup(self, app):
        self._record("startup", app=app)

    @hookimpl
    def register_openapi(self, register):
        self._record("register_openapi", register=register)


def test_create_app_calls_every_hook_through_the_plugin_manager():
    every = EveryHook()
    app = create_app(SCRIPTED_CONFIG, plugins=[ScriptedPlugin(), every], entrypoints=False)
    assert set(every.calls) == set(HOOKS), f"never called: {sorted(set(HOOKS) - set(every.calls))}"
    assert every.calls["startup"] == [{"app": app}]
    assert sorted(call["operation"] for call in every.calls["retry_policy"]) == ["llm", "notify", "persona", "secrets", "storage"]
    for hook in HOOKS:
        if hook.startswith("register_"):
            [call] = every.calls[hook]
            assert callable(call["register"])
