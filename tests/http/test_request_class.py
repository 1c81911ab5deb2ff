"""The app's request class reads its body limit from the app's config, and a request's own limit wins."""

import json

from flask import request


def chat_body(chars):
    return json.dumps({"message": "x" * chars})


def test_a_limit_changed_after_the_app_is_built_counts(scripted_app):
    app = scripted_app()
    client = app.test_client()
    assert client.post("/chat", data=chat_body(500), content_type="application/json").status_code == 200
    app.config["MAX_CONTENT_LENGTH"] = 100
    too_big = client.post("/chat", data=chat_body(500), content_type="application/json")
    assert too_big.status_code == 413
    assert too_big.mimetype == "application/problem+json"


def test_a_requests_own_limit_wins_over_the_config(scripted_app):
    app = scripted_app()

    @app.before_request
    def small_limit():
        request.max_content_length = 100

    too_big = app.test_client().post("/chat", data=chat_body(500), content_type="application/json")
    assert too_big.status_code == 413
