"""The README's promises: its plugin example works as printed, CI runs its test command."""

import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_plugin_example_works_as_printed(tmp_path, monkeypatch):
    block = README.split("<!-- plugin-example -->", 1)[1]
    code = re.search(r"```python\n(.*?)```", block, re.S).group(1)
    (tmp_path / "twin_shout.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("twin_shout", None)
    twin_shout = importlib.import_module("twin_shout")

    from twin_server.app import create_app

    app = create_app({"LLM": "shout", "SHOUT_SUFFIX": "!!", "DATA_DIR": str(tmp_path / "data")}, plugins=[twin_shout])
    body = app.test_client().post("/chat", json={"message": "hello there"}).get_json()
    assert body["response"] == "ADA QUILL SAYS: HELLO THERE!!"


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    assert re.search(r"^make test\b", (ROOT / ".ci/run").read_text(), re.M)
