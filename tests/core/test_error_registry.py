"""The central error-to-status registry: MRO precedence, plugin classes, no leaks."""

import logging

import pytest

from twin_server import errors, hookimpl
from twin_server.errors import StartupError
from twin_server.backends.kinds import operation_names
from twin_server.error_registry import ErrorRegistry, core_registry


class PluginError(Exception):
    pass


class MoreSpecific(PluginError):
    pass


class QuotaError(errors.BackendUnavailable):
    pass


@pytest.mark.parametrize(
    "exc, status",
    [
        (errors.ValidationError("bad"), 400),
        (errors.HistoryTooLong("long"), 400),
        (errors.NotFound("nope"), 404),
        (errors.LimitExceeded("cap"), 429),
        (errors.PersonaError("no persona"), 500),
        (errors.ConfigurationError("no key"), 500),
        (errors.BackendError("refused"), 502),
        (errors.BackendUnavailable("down"), 503),
        (errors.RateLimited("slow", retry_after=2.1), 503),
        (errors.BackendTimeout("late"), 504),
        (errors.TransientError("blip"), 503),
        (KeyError("x"), 500),
        (errors.TwinError("base"), 500),
    ],
)
def test_core_statuses(exc, status):
    assert core_registry(operation_names()).resolve(exc).status == status


def test_most_specific_class_wins_whatever_the_registration_order():
    registry = core_registry(operation_names())
    registry.register(MoreSpecific, 418)
    registry.register(PluginError, 409)
    assert registry.resolve(MoreSpecific()).status == 418
    assert registry.resolve(PluginError()).status == 409
    registry.register(QuotaError, 507)
    assert registry.resolve(QuotaError("q")).status == 507
    # Its parents keep theirs.
    assert registry.resolve(errors.BackendUnavailable("u")).status == 503


def test_rate_limited_sets_retry_after_rounded_up():
    problem = core_registry(operation_names()).resolve(errors.RateLimited("slow", retry_after=2.1))
    assert problem.headers["Retry-After"] == "3"
    assert problem.extras["retry_after"] == 3


def test_server_errors_never_show_the_exception_text():
    exc = errors.BackendUnavailable("connection to 10.0.0.5 failed: key sk-live-123 at /srv/secret/path")
    exc.operation = "llm"
    problem = core_registry(operation_names()).resolve(exc)
    assert problem.detail == "The language model is unavailable; try again later."
    assert "sk-live" not in str(problem.document("r")) and "/srv" not in str(problem.document("r"))


def test_client_errors_show_their_message():
    assert core_registry(operation_names()).resolve(errors.ValidationError("Message too long.")).detail == "Message too long."


@pytest.mark.parametrize("bad", [(object, 400), (ValueError, 200), (ValueError, "400"), (ValueError, 600)])
def test_bad_registrations_are_refused(bad):
    with pytest.raises(errors.ConfigurationError):
        ErrorRegistry().register(*bad)


class ErrorsPlugin:
    __name__ = "errors-plugin"

    @hookimpl
    def register_errors(self, register):
        register(PluginError, 409, "Plugin conflict")

    @hookimpl
    def startup(self, app):
        @app.get("/boom/<kind>")
        def boom(kind):
            raise {"plugin": PluginError("visible to the client"), "key": KeyError("/etc/secret")}[kind]


def test_plugin_registered_errors_answer_through_the_api(scripted_app, scripted, caplog):
    from tests.doubles.scripted import SCRIPTED_CONFIG
    from twin_server.app import create_app

    app = create_app(SCRIPTED_CONFIG, plugins=[scripted, ErrorsPlugin()], entrypoints=False)
    client = app.test_client()
    response = client.get("/boom/plugin")
    assert response.status_code == 409
    assert response.get_json()["title"] == "Plugin conflict"
    assert response.get_json()["detail"] == "visible to the client"
    with caplog.at_level(logging.ERROR, logger="twin_server"):
        response = client.get("/boom/key")
    assert response.status_code == 500
    assert "/etc/secret" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    # The log is where operators debug: the trace is there.
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert record.exc_info and record.exc_info[0] is KeyError


class BadErrorsPlugin:
    __name__ = "bad-errors-plugin"

    @hookimpl
    def register_errors(self, register):
        register("not a class", 400)


def test_bad_plugin_registration_fails_startup(scripted):
    from tests.doubles.scripted import SCRIPTED_CONFIG
    from twin_server.app import create_app

    with pytest.raises(StartupError, match="not an exception class"):
        create_app(SCRIPTED_CONFIG, plugins=[scripted, BadErrorsPlugin()], entrypoints=False)
