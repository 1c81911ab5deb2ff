"""``create_app``: plugins → backends (behind the core's retry) → the turn → routes, per app."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from twin_server import config as settings
from twin_server.app_state import EXTENSION_KEY, TwinState
from twin_server.backends.building import build_backends, collect_backends
from twin_server.backends.kinds import KINDS, operation_names, selector_defaults
from twin_server.error_registry import ErrorRegistry, core_registry
from twin_server.errors import ConfigurationError, PersonaError, StartupError
from twin_server.grounding.context import Grounder, GroundingSettings
from twin_server.grounding.summary import Summaries
from twin_server.grounding.tokens import TokenCounter
from twin_server.http import auth, cors, inflight, page, proxy, sse, streaming
from twin_server.http import hooks as request_hooks
from twin_server.http import json as json_provider
from twin_server.http import headers as security_headers
from twin_server.http import openai as openai_api
from twin_server.http import openapi
from twin_server.http.request import request_class
from twin_server.http.problems import Renderers
from twin_server.http.routes import bp
from twin_server.owner import wiring as owner
from twin_server.plugin_manager import call_register_hook, get_plugin_manager
from twin_server.quotas import policy as quotas
from twin_server.telemetry import wiring as telemetry
from twin_server.turn.turn import Turns

log = logging.getLogger("twin_server")

#: The optional parts whose settings are checked with the backends', so a bad start lists every problem.
CHECKED_PARTS = (telemetry, security_headers, proxy, quotas, inflight, page, cors, auth, sse, owner)

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def create_app(
    config_overrides: Mapping[str, Any] | None = None,
    *,
    plugins: Iterable[object] = (),
    entrypoints: bool = True,
    retry_options: Mapping[str, Any] | None = None,
    warm_up: bool = True,
) -> Flask:
    """Build the app.

    Config: core defaults, then ``TWIN_*`` environment variables, then
    ``config_overrides`` (same keys, without ``TWIN_``). ``plugins`` are
    registered after the installed entry points (or alone, with
    ``entrypoints=False``). ``retry_options`` reach every ``Retrier`` (tests
    inject a fake clock and sleep there). ``warm_up`` loads the persona once
    and logs what is wrong with it. Raises ``StartupError`` listing every
    problem that cannot heal by itself.
    """
    app = Flask("twin_server")
    app.request_class = request_class(app)
    json_provider.install(app)
    app.config.update(settings.DEFAULTS)
    app.config.update(selector_defaults())
    app.config.from_prefixed_env("TWIN")
    app.config.update(config_overrides or {})

    pm = get_plugin_manager(plugins, entrypoints=entrypoints)
    problems = [problem for part in CHECKED_PARTS for problem in part.check(app.config)]
    registries = collect_backends(pm, problems)
    error_registry = _collect_errors(pm, problems)
    observer = telemetry.attempt_observer(app)
    backends = build_backends(
        app.config, pm, registries, problems, retry_options=retry_options or {}, observer=observer
    )
    try:
        history_window = settings.get_int(app.config, "HISTORY_WINDOW", minimum=0)
        max_chars = settings.get_int(app.config, "MAX_MESSAGE_CHARS", minimum=1)
        settings.get_int(app.config, "MAX_CONTENT_LENGTH", minimum=1)
    except ConfigurationError as exc:
        problems.append(str(exc))
    problems.extend(GroundingSettings.check(app.config))
    owner_events = owner.build(app.config, backends, problems) if backends is not None else None
    if problems or backends is None:
        raise StartupError(problems)
    grounding = GroundingSettings.from_config(app.config)
    summaries = Summaries(backends.storage, backends.llm, window=history_window, every=grounding.summary_every)
    turns = Turns(backends, history_window=history_window, max_message_chars=max_chars,
                  grounder=Grounder(grounding, TokenCounter.for_backend(backends.llm)), summaries=summaries)
    turns.after_turn.append(summaries.after_turn)

    app.extensions[EXTENSION_KEY] = TwinState(
        plugin_manager=pm,
        backends=backends,
        errors=error_registry,
        turns=turns,
        renderers=Renderers(),
        registered={kind.name: registries[kind.name].registrations() for kind in KINDS},
        owner=owner_events,
    )
    _install_request_hooks(app)
    telemetry.install(app)
    security_headers.install(app)
    proxy.install(app)
    quotas.install(app)
    inflight.install(app)
    app.register_blueprint(bp)
    page.install(app)
    cors.install(app)
    auth.install(app)
    streaming.install(app)
    openai_api.install(app)
    owner.install(app)
    pm.hook.startup(app=app)
    openapi.install(app)  # last: it documents every route, the plugins' included
    request_hooks.compose(app)
    if warm_up:
        _warm_up(app)
    return app


def startup_problems(config_overrides: Mapping[str, Any] | None = None) -> list[str]:
    """Every reason the app, as configured, cannot start (an empty list when it can)."""
    try:
        create_app(config_overrides, warm_up=False)
    except StartupError as exc:
        return exc.problems
    return []


def _collect_errors(pm, problems: list[str]) -> ErrorRegistry:
    registry = core_registry(operation_names())

    def add(exc_class, status, title=None, *, plugin):
        registry.register(exc_class, status, title)

    try:
        call_register_hook(pm, "register_errors", add)
    except ConfigurationError as exc:
        problems.append(str(exc))
    return registry


def _warm_up(app: Flask) -> None:
    """Load the persona once so a broken one is shouted about at startup, not at the first chat."""
    state = app.extensions[EXTENSION_KEY]
    try:
        persona = state.turns.persona()
    except PersonaError as exc:  # the message says what to fix; a trace would only bury it
        log.error("the persona could not be loaded; /chat and /ready will fail until it can: %s", exc)
        return
    except Exception:
        log.exception("the persona could not be loaded; /chat and /ready will fail until it can")
        return
    log.info("twin of %s ready with backends %s", persona.full_name, state.backends.names())


def _install_request_hooks(app: Flask) -> None:
    state: TwinState = app.extensions[EXTENSION_KEY]

    @app.before_request
    def assign_request_id() -> None:
        # The header as ``request.headers`` reads it, without its KeyError for a header not sent.
        incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
        context = g._get_current_object()  # one context lookup, not two
        # 16 random bytes, a uuid4's randomness: the uuid object cost five times as much.
        context.request_id = incoming if REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
        context.session_id = None

    @app.after_request
    def add_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id") or ""
        return response

    @app.errorhandler(Exception)
    def handle_error(exc: Exception):
        if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 400:
            return exc  # redirects are not errors
        return state.renderers.response(state.errors, exc)
