"""GET /openapi.json: valid OpenAPI 3.1, generated from the code, stable, and no more lenient than the server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema_rs
import pytest
from click.testing import CliRunner
from flask import Blueprint, jsonify
from marshmallow import Schema, fields
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from twin_server import hookimpl
from twin_server.app import create_app
from twin_server.cli import main
from twin_server.errors import StartupError
from twin_server.http import openapi
from twin_server.http.openapi import core, document_of
from twin_server.http.schemas import NOT_SPACE
from twin_server.sessions import SESSION_ID_PATTERN

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
#: Routes that are not the API: the chat page and its static files.
NOT_API = {"static", "twin_page.index"}
KEY = "openapi-test-key"


@pytest.fixture
def doc(local_app):
    return document_of(local_app())


def schema_of(document, name):
    return document["components"]["schemas"][name]


def operations(document):
    return {(method.upper(), path): op for path, item in document["paths"].items() for method, op in item.items()}


# --- the document ----------------------------------------------------------------


@pytest.mark.parametrize("config", [{}, {"API_KEYS": KEY}, {"API_KEYS": KEY, "PUBLIC_CHAT": "false"}, {"METRICS": "off"}])
def test_the_document_is_valid_openapi_3_1(local_app, config):
    document = document_of(local_app(**config))
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_the_document_is_the_checked_in_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(main, ["openapi"])
    assert result.exit_code == 0, result.output
    assert result.stdout == CHECKED_IN.read_text(), (
        "the API changed: regenerate the checked-in document with `twin-server openapi > docs/openapi.json` "
        "(in a shell without TWIN_* settings) and commit the diff"
    )


def test_get_openapi_json_sends_what_was_built_at_startup(local_app, monkeypatch):
    app = local_app()
    built = app.extensions[openapi.EXTENSION_KEY].body
    monkeypatch.setattr(openapi, "build", lambda *a, **k: pytest.fail("built again"))
    monkeypatch.setattr(openapi, "dumps", lambda *a, **k: pytest.fail("serialised again"))
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.data == built
    assert response.get_json() == document_of(app)
    assert response.headers["X-Request-ID"]


def test_every_route_is_documented_with_its_methods(local_app):
    app = local_app()
    document = operations(document_of(app))
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_API:
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        missing += [f"{m} {path}" for m in sorted(rule.methods - {"HEAD", "OPTIONS"}) if (m, path) not in document]
    assert missing == [], (
        f"undocumented routes {missing}: add an operation(...) to twin_server/http/openapi/core.py "
        "(a plugin's route: its register_openapi hook)"
    )


def test_every_core_operation_names_a_route(local_app):
    endpoints = {rule.endpoint for rule in local_app().url_map.iter_rules()}
    assert [op.endpoint for op in core.OPERATIONS if op.endpoint not in endpoints] == []


def test_the_operations_named_in_the_issue_are_there(doc):
    assert set(operations(doc)) >= {
        ("POST", "/chat"), ("POST", "/chat/stream"), ("GET", "/conversation/{session_id}"),
        ("DELETE", "/conversation/{session_id}"), ("GET", "/v1/models"), ("GET", "/v1/models/{model}"),
        ("POST", "/v1/chat/completions"), ("GET", "/health"), ("GET", "/ready"), ("GET", "/profile"),
        ("GET", "/metrics"), ("GET", "/openapi.json"),
    }


def test_an_unrouted_endpoint_is_left_out(local_app):
    assert "/metrics" not in document_of(local_app(METRICS="off"))["paths"]


# --- what each operation says ----------------------------------------------------


def test_request_limits_come_from_the_schemas_and_the_configuration(local_app):
    document = document_of(local_app(MAX_MESSAGE_CHARS=123))
    chat = schema_of(document, "ChatRequest")
    assert chat["additionalProperties"] is False and chat["required"] == ["message"]
    assert chat["properties"]["message"]["maxLength"] == 123
    assert chat["properties"]["session_id"]["pattern"] == f"^{SESSION_ID_PATTERN}$"
    assert schema_of(document, "CompletionMessage")["properties"]["content"]["maxLength"] == 123
    assert schema_of(document, "CompletionRequest")["properties"]["messages"]["maxItems"] == 256
    parameters = {p["name"]: p for p in operations(document)[("GET", "/conversation/{session_id}")]["parameters"]}
    assert set(parameters) == {"session_id", "limit", "before"}
    assert parameters["session_id"]["in"] == "path"
    assert parameters["session_id"]["schema"]["pattern"] == f"^{SESSION_ID_PATTERN}$"
    assert parameters["limit"]["in"] == "query" and parameters["limit"]["schema"]["maximum"] == 500


def test_error_statuses_and_their_schemas(doc):
    ops = operations(doc)
    chat = ops[("POST", "/chat")]["responses"]
    assert sorted(chat) == ["200", "400", "413", "415", "429", "500", "502", "503", "504"]
    assert chat["429"] == {"$ref": "#/components/responses/TooManyRequests"}
    assert sorted(ops[("GET", "/conversation/{session_id}")]["responses"]) == ["200", "400", "404", "429", "500", "502", "503", "504"]
    assert sorted(ops[("GET", "/health")]["responses"]) == ["200", "500"]
    responses = doc["components"]["responses"]
    for name in ("TooManyRequests", "ServiceUnavailable"):
        assert set(responses[name]["headers"]) == {"X-Request-ID", "Retry-After"}
    assert responses["BadRequest"]["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    # Under /v1 errors are OpenAI's envelope, as application/json.
    assert ops[("POST", "/v1/chat/completions")]["responses"]["400"] == {"$ref": "#/components/responses/OpenAIBadRequest"}
    assert responses["OpenAIBadRequest"]["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}}
    assert "MethodNotAllowed" in responses and "Allow" in responses["MethodNotAllowed"]["headers"]


def test_keys_are_documented_where_the_configuration_requires_them(local_app):
    public = operations(document_of(local_app(API_KEYS=KEY)))
    private = operations(document_of(local_app(API_KEYS=KEY, PUBLIC_CHAT="false")))
    keyed = [{"ApiKey": []}, {"ApiKeyHeader": []}]
    assert public[("POST", "/v1/chat/completions")]["security"] == keyed
    assert "401" in public[("GET", "/v1/models")]["responses"]
    assert "security" not in public[("POST", "/chat")] and "401" not in public[("POST", "/chat")]["responses"]
    assert private[("POST", "/chat")]["security"] == keyed
    assert "security" not in private[("GET", "/health")] and "401" not in private[("GET", "/ready")]["responses"]
    without_keys = document_of(local_app())
    assert "security" not in operations(without_keys)[("GET", "/v1/models")]
    assert set(without_keys["components"]["securitySchemes"]) == {"ApiKey", "ApiKeyHeader", "OwnerKey"}


def test_the_stream_documents_its_events(doc):
    content = operations(doc)[("POST", "/chat/stream")]["responses"]["200"]["content"]
    events = {e["properties"]["event"]["const"]: e["properties"]["data"] for e in content["text/event-stream"]["schema"]["oneOf"]}
    assert set(events) == {"session", "delta", "done", "error"}
    assert events["done"]["contentSchema"] == {"$ref": "#/components/schemas/ChatReply"}
    assert events["error"]["contentSchema"] == {"$ref": "#/components/schemas/Problem"}
    completions = operations(doc)[("POST", "/v1/chat/completions")]["responses"]["200"]["content"]
    assert set(completions) == {"application/json", "text/event-stream"}
    [message] = completions["text/event-stream"]["schema"]["oneOf"]
    assert {"const": "[DONE]"} in message["properties"]["data"]["anyOf"]


def test_metrics_are_text(doc):
    assert operations(doc)[("GET", "/metrics")]["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}


# --- the server is at least as strict as the document ------------------------------


def test_not_blank_means_the_same_to_the_server_and_to_json_schema(local_app):
    """The fuzzer's find: with `\\S`, U+001E passed the document (ECMA-262 regex) but not the server."""
    python = re.compile(NOT_SPACE)
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": NOT_SPACE})  # schemathesis' validator
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    assert [c for c in points if (python.search(c) is None) != c.isspace()] == []
    assert [c for c in points if ecma.is_valid(c) == c.isspace()] == []
    message = schema_of(document_of(local_app()), "ChatRequest")["properties"]["message"]
    assert message["pattern"] == NOT_SPACE


CONFUSERS = [True, False, 0, 1, 2.5, -1, "", " ", "1", "2.5", "true", "yes", "on", "\x1e", None, [], [1], {}, {"a": 1}]
VALID_BODIES = {
    "/chat": {"message": "hello"},
    "/chat/stream": {"message": "hello"},
    "/v1/chat/completions": {"model": "m", "messages": [{"role": "user", "content": "hello"}]},
}


def _field_paths(schema, components, prefix=(), depth=0):
    """(path, ...) of every property reachable in ``schema`` (first array items only)."""
    if depth > 3:
        return
    schema = _resolve(schema, components)
    for name, prop in schema.get("properties", {}).items():
        yield (*prefix, name)
        prop = _resolve(prop, components)
        if "properties" in prop:
            yield from _field_paths(prop, components, (*prefix, name), depth + 1)
        elif prop.get("type") == "array" and "$ref" in prop.get("items", {}):
            yield from _field_paths(prop["items"], components, (*prefix, name, 0), depth + 1)


def _resolve(schema, components):
    ref = schema.get("$ref") or next((s["$ref"] for s in schema.get("anyOf", []) if "$ref" in s), None)
    return components["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def _with(body, path, value):
    body = json.loads(json.dumps(body))
    target = body
    for step in path[:-1]:
        if isinstance(step, str) and not isinstance(target.get(step), (dict, list)):
            target[step] = {}
        target = target[step]
    target[path[-1]] = value
    return body


def test_what_the_document_refuses_the_server_refuses(local_app):
    """Type confusion the fuzzer's random values rarely hit: ``"stream": "yes"`` was accepted."""
    app = local_app(API_KEYS=KEY, RATE_LIMIT="off")  # every refusal counts against the rate limit
    client, document = app.test_client(), document_of(app)
    ops = operations(document)
    tried = accepted = 0
    wrong = []
    for path, base in VALID_BODIES.items():
        schema = ops[("POST", path)]["requestBody"]["content"]["application/json"]["schema"]
        validator = OAS31Validator({**schema, "components": document["components"]})
        assert validator.is_valid(base)
        for field in _field_paths(schema, document["components"]):
            for value in CONFUSERS:
                body = _with(base, field, value)
                if validator.is_valid(body):
                    accepted += 1
                    continue
                tried += 1
                response = client.post(path, json=body, headers={"X-API-Key": KEY})
                response.get_data()
                response.close()
                if response.status_code != 400:
                    wrong.append((path, field, value, response.status_code))
    assert wrong == []
    assert tried > 200 and accepted > 20  # both sides of the line were exercised


# --- plugins document their own routes ---------------------------------------------


class StatsSchema(Schema):
    """How many times the twin shouted."""

    shouts = fields.Integer(required=True)


class DocumentedPlugin:
    __name__ = "shout-stats"

    def __init__(self, document=True, **details):
        self.document, self.details = document, details

    @hookimpl
    def startup(self, app):
        bp = Blueprint("shout", __name__)
        bp.add_url_rule("/shout/stats", "stats", lambda: jsonify(shouts=3))
        bp.add_url_rule("/shout/secret", "secret", lambda: jsonify(shouts=4))
        app.register_blueprint(bp)

    @hookimpl
    def register_openapi(self, register):
        if self.document:
            register("shout.stats", "How loud", responses={200: StatsSchema}, **self.details)


def test_a_plugin_route_appears_when_the_plugin_documents_it(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path)}, plugins=[DocumentedPlugin(tags=["shout"])])
    document = document_of(app)
    validate(document)
    op = document["paths"]["/shout/stats"]["get"]
    assert op["operationId"] == "stats" and op["tags"] == ["shout"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Stats"}
    assert schema_of(document, "Stats")["description"] == "How many times the twin shouted."
    assert "/shout/secret" not in document["paths"]  # routed, but not documented
    assert app.test_client().get("/shout/stats").get_json() == {"shouts": 3}


def test_an_undocumented_plugin_route_stays_out(tmp_path):
    assert "/shout/stats" not in document_of(create_app({"DATA_DIR": str(tmp_path)}, plugins=[DocumentedPlugin(document=False)]))["paths"]


@pytest.mark.parametrize(
    "plugin, says",
    [
        (DocumentedPlugin(colour="red"), "shout-stats: unknown OpenAPI detail(s) for 'shout.stats': colour"),
        (DocumentedPlugin(method="POST"), "'shout.stats' answers ['GET'], not POST"),
        (DocumentedPlugin(errors=[418]), "GET /shout/stats lists [418]; errors are among [400, 401,"),
        (DocumentedPlugin(security=["Cookie"]), "GET /shout/stats needs ['Cookie']; schemes are"),
        (DocumentedPlugin(path=StatsSchema), "/shout/stats has no parameter ['shouts']"),
    ],
)
def test_a_bad_registration_is_a_startup_error(tmp_path, plugin, says):
    with pytest.raises(StartupError) as raised:
        create_app({"DATA_DIR": str(tmp_path)}, plugins=[plugin])
    assert says in str(raised.value)


def test_documenting_an_endpoint_that_is_not_routed_is_a_startup_error(tmp_path):
    class Typo:
        @hookimpl
        def register_openapi(self, register):
            register("shout.statz", "How loud")

    with pytest.raises(StartupError) as raised:
        create_app({"DATA_DIR": str(tmp_path)}, plugins=[Typo()])
    assert "no route has the endpoint 'shout.statz'" in str(raised.value)
