"""Every extension point of twin-server, one hook each.

A plugin is any module or object with functions decorated by
``twin_server.hookimpl`` whose names match the hooks below. Bundled plugins
(``twin_local``, ``twin_aws``, ``twin_openai``) are discovered through the
``twin_server`` entry-point group exactly like third-party ones.

Backends are chosen by *name* from configuration, never by which plugin
answered first: the five backend ``register_*`` hooks give every plugin a
``register(name, factory)`` callback, and ``create_app`` picks the factory named
by ``TWIN_STORAGE``, ``TWIN_PERSONA``, ``TWIN_SECRETS`` and ``TWIN_LLM``, and
the factories listed by ``TWIN_NOTIFY``.

A factory is called once per app with a ``BackendContext`` (``.config``, the
app's configuration mapping; ``.secret(name)``, a secret read through the
selected secrets provider; ``.name``, the backend name it was selected by) and
returns the backend object, which must follow the matching protocol in
``twin_server.backends``.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "twin_server"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_storage_backends(register):
    """Called once per app at startup to collect conversation stores.

    Call ``register(name, factory)`` for each store this plugin offers; the
    factory returns an object with ``load``, ``append`` and ``delete`` (see
    ``twin_server.backends.ConversationStore``). Returns nothing.
    """


@hookspec
def register_persona_sources(register):
    """Called once per app at startup to collect persona sources.

    Call ``register(name, factory)``; the factory returns an object whose
    ``load()`` returns a ``twin_server.Persona``. Returns nothing.
    """


@hookspec
def register_secret_providers(register):
    """Called once per app at startup to collect secrets providers.

    Call ``register(name, factory)``; the factory returns an object whose
    ``get(name)`` returns the secret's value as a string. The secrets provider
    is built first, so its factory's ``context.secret`` cannot be used.
    Returns nothing.
    """


@hookspec
def register_llm_backends(register):
    """Called once per app at startup to collect language-model backends.

    Call ``register(name, factory)``; the factory returns an object with
    ``complete(prompt) -> str`` and ``stream(prompt) -> Iterator[str]``.
    Returns nothing.
    """


@hookspec
def register_notifiers(register):
    """Called once per app at startup to collect notifiers (how the owner hears of a lead or an
    unanswered question).

    Call ``register(name, factory)``; the factory returns an object with
    ``notify(event, timeout)`` (see ``twin_server.Notifier``). ``TWIN_NOTIFY``
    selects a comma-separated list of them (default ``log``). Deliveries run on
    a worker thread after the reply, through the core's retry
    (``TWIN_NOTIFY_TIMEOUT``, ``TWIN_RETRY_NOTIFY_*``). Returns nothing.
    """


@hookspec
def register_errors(register):
    """Called once per app at startup to extend the error-to-status registry.

    Call ``register(exception_class, status, title=None)`` to answer the
    plugin's own exceptions with ``status``. The most specific class in an
    exception's MRO wins. Only 4xx problems show the exception's message to
    the client. Returns nothing.
    """


@hookspec(firstresult=True)
def retry_policy(operation):
    """Called once per app and operation kind at startup.

    ``operation`` is "storage", "persona", "secrets", "llm" or "notify". Return a
    ``twin_server.retry.RetryConfig`` to change the defaults for that kind, or
    None to leave them; the first non-None answer wins, and ``TWIN_RETRY_*``
    settings then override its fields.
    """


@hookspec
def startup(app):
    """Called once at the end of ``create_app`` with the built Flask app.

    For plugins that add routes, blueprints or request hooks. Returns nothing.
    """


@hookspec
def register_openapi(register):
    """Called once per app at the end of ``create_app``, after ``startup``, to document plugin routes.

    Call ``register(endpoint, summary, **details)`` for each route this plugin
    added and wants in ``GET /openapi.json``; ``endpoint`` is the Flask endpoint
    name (``"my_blueprint.view"``: the path and method come from the URL map).
    Details (see ``twin_server.http.openapi.operation``): ``body``, ``path``,
    ``query`` (marshmallow schemas), ``responses`` (status → schema, ``None``,
    or ``{media_type: schema}``), ``errors`` (statuses), ``security``,
    ``description``, ``tags``. A route nobody registers stays out of the
    document. Returns nothing.
    """
