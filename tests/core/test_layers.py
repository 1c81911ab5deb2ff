"""The import graph keeps the layers one-directional, and plugins use only the public API."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import twin_server

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "twin_server"

#: The HTTP route modules: none may import another (shared pieces live in http/schemas, sse, problems).
ROUTE_MODULES = ("twin_server.http.routes", "twin_server.http.streaming", "twin_server.http.openai.routes",
                 "twin_server.http.page")
#: Each layer may import only itself and the layers after it in this list.
LAYERS = (
    ("twin_server.cli", "twin_server.app", "twin_server.evaluation"),
    ("twin_server.http", "twin_server.app_state", "twin_server.quotas", "twin_server.telemetry.wiring",
     "twin_server.owner"),
    ("twin_server.turn", "twin_server.grounding"),
    ("twin_server.backends", "twin_server.plugin_manager"),
    ("twin_server.retry", "twin_server.error_registry", "twin_server.telemetry"),
    ("twin_server.errors", "twin_server.types", "twin_server.hookspecs", "twin_server.config",
     "twin_server.sessions", "twin_server.persona_layout", "twin_server.events", "twin_server.replies"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def core_graph() -> dict[str, set[str]]:
    graph = {}
    for path in CORE.rglob("*.py"):
        name = module_name(path)
        if name.startswith("twin_server.testing"):
            continue
        graph[name] = {m for m in imports_of(path) if m.startswith("twin_server.")}
    return graph


def layer_of(module: str) -> int | None:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def test_every_core_module_has_a_layer():
    assert [m for m in core_graph() if layer_of(m) is None and m != "twin_server"] == []


def test_no_route_module_imports_another():
    graph = core_graph()
    for route in ROUTE_MODULES:
        assert graph[route] & set(ROUTE_MODULES) == set(), route


@pytest.mark.parametrize("module", sorted(core_graph()))
def test_layers_import_only_downwards(module):
    if module == "twin_server":
        return
    own = layer_of(module)
    upward = sorted(m for m in core_graph()[module] if (layer_of(m) or len(LAYERS)) < own)
    assert upward == [], f"{module} (layer {own}) imports a higher layer: {upward}"


def test_plugins_import_only_the_public_api():
    allowed = {"twin_server", "twin_server.errors"} | {f"twin_server.{name}" for name in twin_server.__all__}
    offending = []
    for path in (ROOT / "plugins").rglob("*.py"):
        for module in imports_of(path):
            if module.startswith("twin_server.") and module not in allowed and not module.startswith("twin_server.errors."):
                offending.append(f"{path.relative_to(ROOT)}: {module}")
    assert offending == []


def test_importing_the_public_api_loads_no_flask_and_no_sdk():
    code = "import sys, twin_server; print(sorted(m for m in ('flask', 'werkzeug', 'boto3', 'botocore', 'openai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_public_name_is_importable():
    for name in twin_server.__all__:
        assert hasattr(twin_server, name), name


def test_every_package_is_in_the_distribution():
    """A wheel holds only the packages setup.cfg lists: a new sub-package must be listed there."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {module_name(init) for init in CORE.rglob("__init__.py")}
    assert found - listed == set()
