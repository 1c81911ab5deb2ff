"""From plugins to the app's backends: collect the registrations, build the selected ones, wrap them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pluggy

from twin_server import config as settings
from twin_server.backends.kinds import KINDS
from twin_server.backends.protocols import BackendContext
from twin_server.backends.registry import BackendRegistry, check_protocol
from twin_server.backends.retrying import RetryFactory, retry_config_for, timeout_for
from twin_server.errors import ConfigurationError
from twin_server.plugin_manager import call_register_hook
from twin_server.retry import AttemptObserver

__all__ = ["Backends", "build_backends", "collect_backends"]


class Backends:
    """The selected backends of one app, each behind the core's retry: ``backends.storage``, ``.llm``, ..."""

    def __init__(self, by_kind: Mapping[str, Any], make_retrier: RetryFactory | None = None) -> None:
        self._by_kind = dict(by_kind)
        #: Builds a ``Retrier`` for (operation, backend): for core parts that call a backend's extras.
        self.make_retrier = make_retrier

    def __getattr__(self, kind: str) -> Any:
        try:
            return self.__dict__["_by_kind"][kind]
        except KeyError:
            raise AttributeError(kind) from None

    def selected(self) -> Iterator[tuple[str, Any]]:
        """(kind, wrapped backend) for every selected backend, those of a list kind one by one."""
        for kind in KINDS:
            chosen = self._by_kind[kind.name]
            for backend in chosen if kind.many else (chosen,):
                yield kind.name, backend

    def names(self) -> dict[str, str]:
        """Kind → the selected backend's name (a list kind: its names, comma-separated)."""
        names = {}
        for kind in KINDS:
            chosen = self._by_kind[kind.name]
            names[kind.name] = ",".join(b.name for b in chosen) if kind.many else chosen.name
        return names


def collect_backends(pm: pluggy.PluginManager, problems: list[str]) -> dict[str, BackendRegistry]:
    """Every kind's registrations, each collected by one call of its hook through pluggy."""
    registries = {kind.name: BackendRegistry(kind.name) for kind in KINDS}
    for kind in KINDS:
        registry = registries[kind.name]
        try:
            call_register_hook(pm, kind.hook, registry.add, lambda registry=registry: registry.factories)
        except ConfigurationError as exc:
            problems.append(str(exc))
    return registries


def build_backends(
    config: Mapping[str, Any],
    pm: pluggy.PluginManager,
    registries: Mapping[str, BackendRegistry],
    problems: list[str],
    *,
    retry_options: Mapping[str, Any],
    observer: Callable[[str, str], AttemptObserver | None],
) -> Backends | None:
    """The selected backend of each kind, built once and wrapped; None (with ``problems``) when any fails."""
    try:
        policies = {k.name: retry_config_for(k.name, config, pm.hook.retry_policy(operation=k.name)) for k in KINDS}
        timeouts = {k.name: timeout_for(k.name, config) for k in KINDS}
    except ConfigurationError as exc:
        problems.append(str(exc))
        return None
    make_retrier = RetryFactory(policies, timeouts, observer=observer, retrier_options=retry_options)
    built: dict[str, Any] = {}

    def secret(name: str) -> str:
        if "secrets" not in built:
            raise ConfigurationError(f"secret {name!r} was asked for before a secrets provider was available")
        return built["secrets"].get(name)

    failed = False
    for kind in KINDS:
        selected = []
        for name in _selected(config, kind):
            try:
                registration = registries[kind.name].get(name)
                backend = registration.factory(BackendContext(config=config, secret=secret, name=name, kind=kind.name))
                check_protocol(kind.name, name, backend)
            except ConfigurationError as exc:
                problems.append(str(exc))
                failed = True
                continue
            except ImportError as exc:
                missing = exc.name or exc
                problems.append(f"{kind.name} backend {name!r} needs a package that is not installed ({missing})")
                failed = True
                continue
            selected.append(kind.wrapper(backend, name, make_retrier(kind.name, name)))
        if kind.many:
            built[kind.name] = tuple(selected)
        elif selected:
            built[kind.name] = selected[0]
    if failed:
        return None
    return Backends(built, make_retrier)


#: A list selector set to one of these selects nothing.
NONE = {"", "none", "off"}


def _selected(config: Mapping[str, Any], kind: Any) -> list[str]:
    if not kind.many:
        return [settings.get_str(config, kind.setting, kind.default)]
    names = [n for n in settings.get_list(config, kind.setting) if n.lower() not in NONE]
    return list(dict.fromkeys(names))  # each once, in the order given
