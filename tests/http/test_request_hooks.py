"""Composed request hooks keep Flask's order and semantics."""

from flask import Flask, Response

from twin_server.http import hooks


def build(calls):
    app = Flask("hooks")

    @app.get("/")
    def index():
        calls.append("view")
        return "ok"

    for name in ("a", "b", "c"):
        app.before_request(lambda name=name: calls.append(f"before {name}"))

        def after(response, name=name):
            calls.append(f"after {name}")
            response.headers["X-Order"] = response.headers.get("X-Order", "") + name
            return response

        app.after_request(after)
        app.teardown_request(lambda exc, name=name: calls.append(f"teardown {name}"))
    return app


def test_composed_hooks_run_in_flasks_order():
    plain, composed = [], []
    build(plain).test_client().get("/")
    app = build(composed)
    hooks.compose(app)
    assert len(app.before_request_funcs[None]) == 1
    response = app.test_client().get("/")
    assert composed == plain
    assert composed == ["before a", "before b", "before c", "view", "after c", "after b", "after a",
                        "teardown c", "teardown b", "teardown a"]
    assert response.headers["X-Order"] == "cba"


def test_a_before_hook_that_answers_stops_the_rest_and_the_view():
    calls = []
    app = build(calls)
    app.before_request_funcs[None].insert(1, lambda: Response("stopped", status=403))
    hooks.compose(app)
    response = app.test_client().get("/")
    assert response.status_code == 403
    assert calls == ["before a", "after c", "after b", "after a", "teardown c", "teardown b", "teardown a"]


def test_hooks_added_after_composing_still_run_around_the_composed_ones():
    calls = []
    app = build(calls)
    hooks.compose(app)
    app.before_request(lambda: calls.append("before late"))
    app.after_request(lambda response: calls.append("after late") or response)
    app.test_client().get("/")
    assert calls[:5] == ["before a", "before b", "before c", "before late", "view"]
    assert calls[5] == "after late"


def test_the_app_runs_its_hooks_composed(local_app):
    app = local_app()
    assert len(app.before_request_funcs[None]) == 1
    response = app.test_client().get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
