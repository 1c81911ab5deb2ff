"""Every hook is documented (when it is called, what it returns) and exercised by a test."""

import inspect
from pathlib import Path

import pytest

from twin_server import hookspecs

HOOKS = [name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "twin_server_spec")]
TESTS = "\n".join(p.read_text() for p in Path(__file__).parents[1].rglob("*.py") if p.name != Path(__file__).name)


def test_there_are_hooks():
    assert {"register_storage_backends", "register_llm_backends", "register_errors", "retry_policy", "startup"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and doc.startswith("Called"), f"{hook}: say when it is called"
    assert "Return" in doc, f"{hook}: say what it returns"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test_plugin_implementing_it(hook):
    assert f"def {hook}(" in TESTS, f"no test plugin implements {hook}"
