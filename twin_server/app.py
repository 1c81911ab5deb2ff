"""``create_app``: plugins → backends (behind the core's retry) → routes, per app."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from twin_server import auth, cors, limits, observability, openai_compat, page, proxy, security, settings, streaming
from twin_server.api import bp
from twin_server.backends import KINDS, SELECTORS, BackendContext, BackendRegistry, check_protocol
from twin_server.chat import ChatService
from twin_server.errors import ConfigurationError, LimitExceeded, StartupError
from twin_server.plugins import call_per_plugin, get_plugin_manager
from twin_server.problems import ErrorRegistry, Problem, core_registry
from twin_server.resilience import OPERATIONS, WRAPPERS, Backends, RetryFactory, retry_config_for, timeout_for
from twin_server.state import EXTENSION_KEY, TwinState, twin

log = logging.getLogger("twin_server")

#: The optional parts whose settings are checked with the backends', so a bad start lists every problem.
CHECKED_PARTS = (observability, security, proxy, limits, page, cors, auth, streaming)

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PROBLEM_JSON = "application/problem+json"


def create_app(
    config_overrides: Mapping[str, Any] | None = None,
    *,
    plugins: Iterable[object] = (),
    entrypoints: bool = True,
    retry_options: Mapping[str, Any] | None = None,
) -> Flask:
    """Build the app.

    Config: core defaults, then ``TWIN_*`` environment variables, then
    ``config_overrides`` (same keys, without ``TWIN_``). ``plugins`` are
    registered after the installed entry points (or alone, with
    ``entrypoints=False``). ``retry_options`` reach every ``Retrier`` (tests
    inject a fake clock and sleep there). Raises ``StartupError`` listing every
    problem that cannot heal by itself.
    """
    app = Flask("twin_server")
    app.config.update(settings.DEFAULTS)
    app.config.from_prefixed_env("TWIN")
    app.config.update(config_overrides or {})

    pm = get_plugin_manager(plugins, entrypoints=entrypoints)
    problems = [problem for part in CHECKED_PARTS for problem in part.check(app.config)]
    registries = collect_backends(pm, problems)
    error_registry = _collect_errors(pm, problems)
    observer = observability.attempt_observer(app)
    backends = _build_backends(app.config, pm, registries, problems, retry_options or {}, observer)
    try:
        history_window = settings.get_int(app.config, "HISTORY_WINDOW", minimum=0)
        max_chars = settings.get_int(app.config, "MAX_MESSAGE_CHARS", minimum=1)
        settings.get_int(app.config, "MAX_CONTENT_LENGTH", minimum=1)
    except ConfigurationError as exc:
        problems.append(str(exc))
    if problems or backends is None:
        raise StartupError(problems)

    app.extensions[EXTENSION_KEY] = TwinState(
        plugin_manager=pm,
        backends=backends,
        errors=error_registry,
        chat=ChatService(backends, history_window),
        max_message_chars=max_chars,
        registered={kind: registries[kind].registrations() for kind in KINDS},
    )
    _install_request_hooks(app)
    observability.install(app)
    security.install(app)
    proxy.install(app)
    limits.install(app)
    app.register_blueprint(bp)
    page.install(app)
    cors.install(app)
    auth.install(app)
    streaming.install(app)
    openai_compat.install(app)
    pm.hook.startup(app=app)
    _warm_up(app)
    return app


def collect_backends(pm, problems: list[str]) -> dict[str, BackendRegistry]:
    registries = {kind: BackendRegistry(kind) for kind in KINDS}
    for kind in KINDS:
        try:
            call_per_plugin(pm, SELECTORS[kind][1], registries[kind].register_for)
        except ConfigurationError as exc:
            problems.append(str(exc))
    return registries


def _collect_errors(pm, problems: list[str]) -> ErrorRegistry:
    registry = core_registry()
    try:
        call_per_plugin(pm, "register_errors", lambda plugin: registry.register)
    except ConfigurationError as exc:
        problems.append(str(exc))
    return registry


def _build_backends(config, pm, registries, problems: list[str], retry_options, observer) -> Backends | None:
    try:
        policies = {op: retry_config_for(op, config, pm.hook.retry_policy(operation=op)) for op in OPERATIONS}
        timeouts = {op: timeout_for(op, config) for op in OPERATIONS}
    except ConfigurationError as exc:
        problems.append(str(exc))
        return None
    make_retrier = RetryFactory(policies, timeouts, observer=observer, retrier_options=retry_options)
    built: dict[str, Any] = {}

    def secret(name: str) -> str:
        if "secrets" not in built:
            raise ConfigurationError(f"secret {name!r} was asked for before a secrets provider was available")
        return built["secrets"].get(name)

    for kind in KINDS:
        name = settings.get_str(config, SELECTORS[kind][0])
        try:
            registration = registries[kind].get(name)
            context = BackendContext(config=config, secret=secret, name=name, kind=kind)
            backend = registration.factory(context)
            check_protocol(kind, name, backend)
        except ConfigurationError as exc:
            problems.append(str(exc))
            continue
        except ImportError as exc:
            problems.append(f"{kind} backend {name!r} needs a package that is not installed ({exc.name or exc})")
            continue
        built[kind] = WRAPPERS[kind](backend, name, make_retrier(kind, name))
    if len(built) != len(KINDS):
        return None
    return Backends(**built)


def _warm_up(app: Flask) -> None:
    """Load the persona once so a broken one is shouted about at startup, not at the first chat."""
    state = app.extensions[EXTENSION_KEY]
    try:
        persona = state.chat.persona()
    except Exception:
        log.exception("the persona could not be loaded; /chat and /ready will fail until it can")
        return
    log.info("twin of %s ready with backends %s", persona.full_name, state.backends.names())


def _install_request_hooks(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        g.session_id = None

    @app.after_request
    def add_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id") or ""
        return response

    @app.errorhandler(Exception)
    def handle_error(exc: Exception):
        if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 400:
            return exc  # redirects are not errors
        problem = resolve_and_log(exc)
        if openai_compat.is_openai_request():
            return openai_compat.error_response(problem)
        return problem_response(problem)


def resolve_and_log(exc: BaseException) -> Problem:
    """Resolve an exception through the app's registry and log it with its context."""
    problem = twin().errors.resolve(exc)
    context = {
        "request_id": g.get("request_id"),
        "session_id": g.get("session_id"),
        "operation": getattr(exc, "operation", None),
        "backend": getattr(exc, "backend", None),
        "status": problem.status,
    }
    described = " ".join(f"{k}={v}" for k, v in context.items() if v is not None)
    # A spent allowance (the daily budget is a 503) is policy working, not a failure: no trace.
    if problem.status >= 500 and not isinstance(exc, LimitExceeded):
        log.error("request failed: %s %s", type(exc).__name__, described, exc_info=exc, extra={"problem": context})
    else:
        log.warning("request refused: %s %s", type(exc).__name__, described, extra={"problem": context})
    return problem


def problem_response(problem: Problem) -> Response:
    response = jsonify(problem.document(g.get("request_id") or ""))
    response.status_code = problem.status
    response.mimetype = PROBLEM_JSON
    response.headers.update(problem.headers)
    return response
