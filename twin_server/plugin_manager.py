"""The plugin manager factory: a fresh manager per app, never a global."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pluggy

from twin_server import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME


def get_plugin_manager(plugins: Iterable[object] = (), *, entrypoints: bool = True) -> pluggy.PluginManager:
    """Build a plugin manager.

    ``entrypoints`` loads every installed ``twin_server`` entry point (the
    bundled plugins included); ``plugins`` are extra plugin objects registered
    after them, which is how tests and embedders add their own.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if entrypoints:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if pm.is_registered(plugin):
            continue
        if pm.get_plugin(name) is not None:
            name = f"{name}-{id(plugin):x}"
        pm.register(plugin, name=name)
    pm.check_pending()
    return pm


def plugin_distributions(pm: pluggy.PluginManager) -> dict[str, str]:
    """Map plugin name to "project version" for plugins loaded from entry points."""
    found = {}
    for plugin, dist in pm.list_plugin_distinfo():
        name = pm.get_name(plugin)
        if name is not None:
            found[name] = f"{dist.project_name} {dist.version}"
    return found


def call_per_plugin(pm: pluggy.PluginManager, hook_name: str, make_register) -> None:
    """Call ``hook_name`` on each plugin with a ``register`` bound to that plugin's name.

    The registries need to know *which* plugin registered a name so that a
    clash can name both; ``make_register(plugin_name)`` returns the callback.
    """
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():
        impl.function(register=make_register(impl.plugin_name))
