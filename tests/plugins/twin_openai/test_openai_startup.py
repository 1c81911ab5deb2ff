"""Starting an app with TWIN_LLM=openai: a missing key, a missing SDK, bad settings, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from tests.doubles.servers import ROOT
from twin_server.app import create_app
from twin_server.cli import main
from twin_server.errors import StartupError


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TWIN_LLM", "openai")
    monkeypatch.setenv("TWIN_SECRETS", "env")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return tmp_path


def test_a_missing_key_stops_startup_saying_which_secret_and_how(env):
    with pytest.raises(StartupError) as caught:
        create_app()
    [reason] = caught.value.problems
    assert "secret OPENAI_API_KEY is not set" in reason
    assert "export OPENAI_API_KEY=" in reason


def test_check_names_the_missing_secret(env):
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 2
    assert "OPENAI_API_KEY is not set: export OPENAI_API_KEY=" in result.output


def test_check_passes_once_the_key_is_set(env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-check")
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert "llm      openai" in result.output


def test_without_the_sdk_startup_says_to_install_the_extra(env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-no-sdk")
    monkeypatch.setitem(sys.modules, "openai", None)  # what `import openai` sees without the extra
    for module in ("twin_openai.backend", "twin_openai.translate"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(StartupError) as caught:
        create_app()
    [reason] = caught.value.problems
    assert "install twin-server[openai]" in reason and "llm backend 'openai'" in reason


def test_bad_settings_are_all_listed_at_startup(env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-settings")
    with pytest.raises(StartupError) as caught:
        create_app({"OPENAI_TEMPERATURE": 7, "OPENAI_MAX_TOKENS": -1})
    assert "TWIN_OPENAI_TEMPERATURE must be at most 2, not 7" in str(caught.value)
    assert "TWIN_OPENAI_MAX_TOKENS must be at least 1, not -1" in str(caught.value)


def test_plugins_lists_the_openai_backend(env):
    result = CliRunner().invoke(main, ["plugins"])
    line = next(l for l in result.output.splitlines() if l.startswith("openai"))
    assert "llm:openai" in line and "twin-server" in line


def test_the_sdk_is_imported_only_when_the_backend_is_built(tmp_path):
    code = textwrap.dedent(
        f"""
        import os, sys
        import twin_openai
        print("after import:", "openai" in sys.modules)
        from twin_server.app import create_app
        create_app({{"DATA_DIR": {str(tmp_path)!r}}})
        print("offline app:", "openai" in sys.modules)
        os.environ["OPENAI_API_KEY"] = "sk-test-lazy"
        create_app({{"DATA_DIR": {str(tmp_path)!r}, "LLM": "openai", "SECRETS": "env"}})
        print("openai app:", "openai" in sys.modules)
        """
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["after import: False", "offline app: False", "openai app: True"]
