"""Runs a twin_server.testing contract against a backend in an inner pytest session (pytester).

A test module using it declares ``pytest_plugins = ["pytester"]`` and imports the
``pytester`` fixture below, which keeps the inner sessions free of installed plugins.
"""

from __future__ import annotations

import textwrap

import pytest


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester whose inner sessions load no installed plugin (hypothesis, playwright...): 10x faster."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def run_contract(pytester, module: str, contract: str, body: str) -> tuple[set[str], set[str]]:
    """Run ``class TestSubject(<contract>)`` with ``body``; the names of the checks that (passed, failed).

    ``body`` refers to the names of the test module ``module`` as ``here.<Name>``; none may be skipped.
    """
    pytester.makepyfile(
        test_subject=f"import sys\n\nimport pytest\n\nfrom twin_server.testing import {contract}\n\n"
        f"here = sys.modules[{module!r}]\n\n\nclass TestSubject({contract}):\n"
        + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
        + "\n"
    )
    recorded = pytester.inline_run("-p", "no:cacheprovider")
    passed, skipped, failed = recorded.listoutcomes()
    assert skipped == []
    name = lambda report: report.nodeid.rsplit("::", 1)[-1]  # noqa: E731
    return {name(r) for r in passed}, {name(r) for r in failed}
