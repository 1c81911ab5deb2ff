"""The plugin manager factory: a fresh manager per app, never a global."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from twin_server import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
DEFAULTS_PLUGIN = "twin_server.defaults"


def get_plugin_manager(plugins: Iterable[object] = (), *, entrypoints: bool = True) -> pluggy.PluginManager:
    """Build a plugin manager.

    The core's own backends (``twin_server.backends.defaults``) are always
    registered first; ``entrypoints`` loads every installed ``twin_server``
    entry point (the bundled plugins included); ``plugins`` are extra plugin
    objects registered after them, which is how tests and embedders add their own.
    """
    from twin_server.backends import defaults

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name=DEFAULTS_PLUGIN)  # the core's own backends, a plugin like the others
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


class Register:
    """The ``register`` callback a ``register_*`` hook is called with, through pluggy.

    The hook is called once, as ``pm.hook.<name>(register=...)``, so pluggy's
    wrappers (``wrapper=True``, ``hookwrapper=True``) and tracing see it like any
    other call. Which plugin is calling ``register`` is found from the call
    stack: the nearest frame running one of the hook's implementations. That is
    how a clash of names can say which two plugins registered it.
    ``registered`` is what was registered so far, for a plugin that wraps others'.
    """

    def __init__(self, caller: pluggy.HookCaller, add: Callable[..., None], registered: Callable[[], Any] = dict) -> None:
        self._owners = {impl.function.__code__: impl.plugin_name for impl in caller.get_hookimpls()}
        self._add = add
        self._registered = registered

    @property
    def registered(self) -> Any:
        return self._registered()

    def calling_plugin(self) -> str:
        frame = sys._getframe(1)
        while frame is not None:
            owner = self._owners.get(frame.f_code)
            if owner is not None:
                return owner
            frame = frame.f_back
        return "unknown plugin"

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self._add(*args, plugin=self.calling_plugin(), **kwargs)


def call_register_hook(
    pm: pluggy.PluginManager, hook_name: str, add: Callable[..., None], registered: Callable[[], Any] = dict
) -> None:
    """Call a ``register_*`` hook through pluggy; ``add(..., plugin=name)`` receives each registration."""
    caller = getattr(pm.hook, hook_name)
    caller(register=Register(caller, add, registered))
