"""The plugin contract: a fresh manager per app, backends chosen by name, clear startup errors."""

import subprocess
import sys

import pytest

from tests.doubles.scripted import SCRIPTED_CONFIG, ScriptedPlugin
from twin_server import hookimpl
from twin_server.app import create_app
from twin_server.errors import StartupError
from twin_server.plugin_manager import get_plugin_manager


def test_each_app_gets_its_own_plugin_manager():
    one, two = ScriptedPlugin(), ScriptedPlugin()
    app_one = create_app(SCRIPTED_CONFIG, plugins=[one], entrypoints=False)
    app_two = create_app(SCRIPTED_CONFIG, plugins=[two], entrypoints=False)
    app_one.test_client().post("/chat", json={"message": "to one"})
    assert one.llm.calls == 1 and two.llm.calls == 0
    assert app_one.extensions["twin_server"].plugin_manager is not app_two.extensions["twin_server"].plugin_manager


def test_bundled_plugin_is_discovered_through_its_entry_point():
    pm = get_plugin_manager()
    names = dict(pm.list_name_plugin())
    assert "local" in names
    assert any(dist.project_name == "twin-server" for _plugin, dist in pm.list_plugin_distinfo())


def test_without_entry_points_no_backend_exists():
    with pytest.raises(StartupError) as info:
        create_app(entrypoints=False)
    text = str(info.value)
    for kind in ("secrets", "storage", "persona", "llm"):
        assert f"unknown {kind} backend" in text  # every problem at once, not the first


def test_unknown_backend_lists_the_registered_ones(scripted):
    with pytest.raises(StartupError, match=r"unknown llm backend 'nope' \(TWIN_LLM\); registered: scripted$"):
        create_app({**SCRIPTED_CONFIG, "LLM": "nope"}, plugins=[scripted], entrypoints=False)
    with pytest.raises(StartupError, match=r"unknown llm backend 'nope' \(TWIN_LLM\); registered: .*offline.*scripted"):
        create_app({**SCRIPTED_CONFIG, "LLM": "nope"}, plugins=[scripted])


class Clash:
    __name__ = "clashing-plugin"

    @hookimpl
    def register_llm_backends(self, register):
        register("scripted", lambda context: None)


def test_two_plugins_registering_one_name_is_an_error_naming_both(scripted):
    with pytest.raises(StartupError) as info:
        create_app(SCRIPTED_CONFIG, plugins=[scripted, Clash()], entrypoints=False)
    assert "'scripted-test-plugin'" in str(info.value) and "'clashing-plugin'" in str(info.value)


class Incomplete:
    __name__ = "incomplete-plugin"

    @hookimpl
    def register_llm_backends(self, register):
        register("half", lambda context: object())


def test_a_backend_missing_protocol_methods_is_refused(scripted):
    with pytest.raises(StartupError, match="does not implement complete, stream"):
        create_app({**SCRIPTED_CONFIG, "LLM": "half"}, plugins=[scripted, Incomplete()], entrypoints=False)


class NeedsSecret:
    __name__ = "needs-secret"

    def __init__(self):
        self.contexts = []

    @hookimpl
    def register_llm_backends(self, register):
        def factory(context):
            self.contexts.append(context)
            context.secret("API_TOKEN")
            return ScriptedPlugin().llm

        register("secretive", factory)


def test_factories_get_config_and_secrets_once_per_app(scripted):
    plugin = NeedsSecret()
    scripted.secrets.values["API_TOKEN"] = "t0k3n"
    app = create_app({**SCRIPTED_CONFIG, "LLM": "secretive", "CUSTOM": 7}, plugins=[scripted, plugin], entrypoints=False)
    app.test_client().post("/chat", json={"message": "a"})
    app.test_client().post("/chat", json={"message": "b"})
    assert len(plugin.contexts) == 1
    assert plugin.contexts[0].config["CUSTOM"] == 7
    assert plugin.contexts[0].name == "secretive"


def test_missing_secret_is_a_startup_error_saying_which(scripted):
    with pytest.raises(StartupError, match="API_TOKEN"):
        create_app({**SCRIPTED_CONFIG, "LLM": "secretive"}, plugins=[scripted, NeedsSecret()], entrypoints=False)


def test_environment_config_is_json_decoded(monkeypatch, scripted):
    monkeypatch.setenv("TWIN_HISTORY_WINDOW", "3")
    monkeypatch.setenv("TWIN_LLM", "scripted")
    app = create_app({k: v for k, v in SCRIPTED_CONFIG.items() if k != "LLM"}, plugins=[scripted], entrypoints=False)
    assert app.config["HISTORY_WINDOW"] == 3 and app.config["LLM"] == "scripted"


def test_bad_setting_is_a_startup_error(scripted):
    with pytest.raises(StartupError, match="TWIN_HISTORY_WINDOW must be a whole number"):
        create_app({**SCRIPTED_CONFIG, "HISTORY_WINDOW": "many"}, plugins=[scripted], entrypoints=False)


def test_importing_hookimpl_loads_no_flask_app_and_no_sdk():
    code = (
        "import sys, twin_server; from twin_server import hookimpl, Message, Persona;"
        "heavy = [m for m in ('flask', 'boto3', 'openai', 'twin_server.app') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_bad_setting_is_listed_at_once(scripted):
    with pytest.raises(StartupError) as info:
        create_app(
            {**SCRIPTED_CONFIG, "LLM": "nope", "HISTORY_WINDOW": "x", "CORS_ORIGINS": "not an origin",
             "FRAME_ANCESTORS": "javascript:", "SSE_HEARTBEAT": "soon", "PUBLIC_CHAT": False, "RATE_LIMIT": "lots",
             "HSTS": "maybe", "METRICS": "sometimes"},
            plugins=[scripted], entrypoints=False,
        )
    text = str(info.value)
    for named in ("TWIN_LLM", "TWIN_HISTORY_WINDOW", "TWIN_CORS_ORIGINS", "TWIN_FRAME_ANCESTORS", "TWIN_SSE_HEARTBEAT",
                  "TWIN_PUBLIC_CHAT", "TWIN_RATE_LIMIT", "TWIN_HSTS", "TWIN_METRICS"):
        assert named in text, named


class Shouting:
    """An LLM middleware: wraps whatever backend it is built on and upper-cases its replies."""

    def __init__(self, inner):
        self.inner = inner

    def complete(self, prompt):
        return self.inner.complete(prompt).upper()

    def stream(self, prompt):
        for piece in self.inner.stream(prompt):
            yield piece.upper()


class ShoutingWrapper:
    """A ``wrapper=True`` hookimpl: runs around every other plugin's registrations."""

    __name__ = "shouting-wrapper"

    def __init__(self):
        self.seen_before: list[str] = []
        self.seen_after: list[str] = []

    @hookimpl(wrapper=True)
    def register_llm_backends(self, register):
        self.seen_before = sorted(register.registered)
        result = yield
        self.seen_after = sorted(register.registered)
        inner = register.registered["scripted"]
        register("shouting", lambda context: Shouting(inner(context)))
        return result


class OldStyleWrapper:
    __name__ = "old-style-wrapper"

    @hookimpl(hookwrapper=True)
    def register_llm_backends(self, register):
        yield
        register("old-style", lambda context: Shouting(register.registered["scripted"](context)))


def test_a_wrapper_hookimpl_registers_a_working_backend_built_on_what_others_registered():
    wrapper = ShoutingWrapper()
    scripted = ScriptedPlugin(llm_steps=["hello there"])
    app = create_app({**SCRIPTED_CONFIG, "LLM": "shouting"}, plugins=[scripted, wrapper], entrypoints=False)
    assert wrapper.seen_before == [] and wrapper.seen_after == ["scripted"]
    response = app.test_client().post("/chat", json={"message": "hi"})
    assert response.status_code == 200 and response.get_json()["response"] == "HELLO THERE"
    assert scripted.llm.calls == 1  # the core's retry wraps the middleware, which calls the real backend once


def test_an_old_style_hookwrapper_registers_too():
    app = create_app({**SCRIPTED_CONFIG, "LLM": "old-style"}, plugins=[ScriptedPlugin(["quiet"]), OldStyleWrapper()],
                     entrypoints=False)
    assert app.test_client().post("/chat", json={"message": "hi"}).get_json()["response"] == "QUIET"


def test_a_clash_made_by_a_wrapper_names_both_plugins():
    class Clashing:
        __name__ = "clashing-wrapper"

        @hookimpl(wrapper=True)
        def register_llm_backends(self, register):
            result = yield
            register("scripted", lambda context: None)
            return result

    with pytest.raises(StartupError) as caught:
        create_app(SCRIPTED_CONFIG, plugins=[ScriptedPlugin(), Clashing()], entrypoints=False)
    assert "registered twice: by plugin 'scripted-test-plugin' and by plugin 'clashing-wrapper'" in str(caught.value)


def test_hook_calls_are_visible_to_pluggy_tracing():
    seen = []
    pm = get_plugin_manager([ScriptedPlugin()], entrypoints=False)
    undo = pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name), lambda *args: None)
    from twin_server.backends.building import collect_backends

    collect_backends(pm, [])
    undo()
    assert {"register_storage_backends", "register_persona_sources", "register_secret_providers",
            "register_llm_backends"} <= set(seen)
