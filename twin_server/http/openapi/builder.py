"""Build the OpenAPI 3.1 document of one app from its URL map and its operations (apispec + marshmallow).

Paths and methods come from the URL map, bodies and parameters from the
marshmallow schemas the routes validate with, limits from the app's
configuration (``TWIN_MAX_MESSAGE_CHARS`` is the ``maxLength`` it enforces),
and the key requirement of every path from the app's access policy. An
operation whose endpoint is not routed (``/metrics`` with ``TWIN_METRICS=off``)
is left out; an undocumented route is not in the document.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable, Mapping
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema, fields
from werkzeug.routing import Rule

from twin_server.errors import ConfigurationError
from twin_server.http import auth
from twin_server.http.openai.errors import OpenAIErrors
from twin_server.http.openai.schema import OpenAIErrorSchema
from twin_server.http.openapi import components
from twin_server.http.openapi.operation import Operation
from twin_server.http.problems import PROBLEM_JSON, ProblemJson
from twin_server.http.schemas import ProblemSchema

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"
DEFAULT_EVENT = "message"
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}

#: The error body of each API: renderer class → (response-name prefix, media type, schema).
ERROR_FORMATS: dict[type, tuple[str, str, type[Schema]]] = {
    ProblemJson: ("", PROBLEM_JSON, ProblemSchema),
    OpenAIErrors: ("OpenAI", JSON, OpenAIErrorSchema),
}

_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def openapi_path(rule: Rule) -> str:
    """``/conversation/<session_id>`` → ``/conversation/{session_id}``."""
    return _ARGUMENT.sub(r"{\1}", rule.rule)


def _constant_as_const(self: Any, field: fields.Field, ret: dict, **kwargs: Any) -> dict:
    """``fields.Constant`` is a ``const`` (apispec shows it only as a default)."""
    if not isinstance(field, fields.Constant):
        return {}
    ret.pop("default", None)
    kind = {str: "string", int: "integer", bool: "boolean", type(None): "null"}.get(type(field.constant))
    return {"const": field.constant, **({"type": kind} if kind else {})}


class Builder:
    def __init__(self, app: Flask, title: str, version: str, description: str, tags: Mapping[str, str]) -> None:
        self.app = app
        self.marshmallow = MarshmallowPlugin()
        self.spec = APISpec(
            title=title, version=version, openapi_version=OPENAPI_VERSION, plugins=[self.marshmallow],
            info={"description": description},
        )
        self.marshmallow.converter.add_attribute_function(_constant_as_const)
        for name, meaning in tags.items():
            self.spec.tag({"name": name, "description": meaning})
        self.policy: auth.AccessPolicy = app.extensions[auth.EXTENSION_KEY]
        self.renderers = app.extensions["twin_server"].renderers
        self.rules: dict[str, list[Rule]] = {}
        for rule in app.url_map.iter_rules():
            self.rules.setdefault(rule.endpoint, []).append(rule)
        components.add_common(self.spec)
        for prefix, media_type, schema in ERROR_FORMATS.values():
            components.add_error_responses(self.spec, prefix, media_type, self.ref(schema))
        self.ids: dict[str, str] = {}

    def ref(self, schema: Any) -> dict:
        return self.marshmallow.converter.resolve_nested_schema(schema)

    # --- operations -------------------------------------------------------------

    def add(self, op: Operation, *, required: bool) -> None:
        """Add ``op`` for each of its endpoint's rules; an unrouted endpoint is an error when ``required``."""
        rules = self.rules.get(op.endpoint)
        if not rules:
            if required:
                routed = ", ".join(sorted(self.rules))
                raise ConfigurationError(f"register_openapi: no route has the endpoint {op.endpoint!r} (routed: {routed})")
            return
        for rule in rules:
            methods = sorted((rule.methods or set()) - IMPLICIT_METHODS)
            if op.method is not None:
                if op.method.upper() not in methods:
                    raise ConfigurationError(f"OpenAPI: {op.endpoint!r} answers {methods}, not {op.method.upper()}")
                methods = [op.method.upper()]
            elif len(methods) > 1:
                raise ConfigurationError(f"OpenAPI: {op.endpoint!r} answers {methods}; say which with method=")
            for method in methods:
                self._add(op, rule, method)

    def _add(self, op: Operation, rule: Rule, method: str) -> None:
        path = openapi_path(rule)
        where = f"{method} {path}"
        if op.id in self.ids:
            raise ConfigurationError(f"OpenAPI: operation id {op.id!r} of {where} is also {self.ids[op.id]}'s")
        self.ids[op.id] = where
        document: dict[str, Any] = {"operationId": op.id, "summary": op.summary}
        if op.description:
            document["description"] = op.description
        if op.tags:
            document["tags"] = list(op.tags)
        unknown = sorted(set(op.errors) - set(components.ERRORS))
        if unknown:
            raise ConfigurationError(f"OpenAPI: {where} lists {unknown}; errors are among {sorted(components.ERRORS)}")
        errors = {500, *op.errors}
        parameters = self._parameters(op, rule, errors)
        if parameters:
            document["parameters"] = parameters
        if op.body is not None:
            document["requestBody"] = {"required": True, "content": {JSON: {"schema": self._schema(op.body)}}}
            errors |= {400, 413, 415}
        if op.security is not None:
            unknown = sorted(set(op.security) - set(components.SECURITY_SCHEMES))
            if unknown:
                raise ConfigurationError(f"OpenAPI: {where} needs {unknown}; schemes are {sorted(components.SECURITY_SCHEMES)}")
            document["security"] = [{name: []} for name in op.security]
            errors.add(401)
        elif self.policy.requires_key(path):
            document["security"] = [{name: []} for name in components.API_KEY_SCHEMES]
            errors.add(401)
        responses = {str(status): self._response(status, spec) for status, spec in sorted(op.responses.items())}
        renderer = type(self.renderers.for_path(path))
        if renderer not in ERROR_FORMATS:
            raise ConfigurationError(f"OpenAPI: {where} answers errors with {renderer.__name__}, which ERROR_FORMATS lacks")
        prefix = ERROR_FORMATS[renderer][0]
        for status in sorted(errors):
            responses[str(status)] = {"$ref": f"#/components/responses/{components.error_name(prefix, status)}"}
        document["responses"] = responses
        self.spec.path(path=path, operations={method.lower(): document})

    def _parameters(self, op: Operation, rule: Rule, errors: set[int]) -> list[dict]:
        parameters: list[dict] = []
        described = set(_instance(op.path).fields) if op.path is not None else set()
        if described - rule.arguments:
            raise ConfigurationError(f"OpenAPI: {rule.rule} has no parameter {sorted(described - rule.arguments)}")
        if op.path is not None:
            parameters.append({"in": "path", "schema": op.path})
            errors.add(400)
        for name in sorted(rule.arguments - described):
            parameters.append({"in": "path", "name": name, "required": True, "schema": {"type": "string"}})
        if rule.arguments:
            errors.add(404)  # a value that is not a path segment routes nowhere
        if op.query is not None:
            parameters.append({"in": "query", "schema": op.query})
            errors.add(400)
        return parameters

    def _schema(self, spec: Any) -> Any:
        if isinstance(spec, Schema) or (isinstance(spec, type) and issubclass(spec, Schema)):
            return spec
        return spec(self.app)

    # --- responses --------------------------------------------------------------

    def _response(self, status: int, spec: Any) -> dict:
        description = http.HTTPStatus(status).phrase
        if spec is not None and not isinstance(spec, Mapping):
            description = _summary_of(spec) or description
            spec = {JSON: spec}
        response: dict[str, Any] = {"description": description, "headers": components.request_id_header()}
        if spec:
            response["content"] = {media_type: self._content(media_type, value) for media_type, value in spec.items()}
        return response

    def _content(self, media_type: str, value: Any) -> dict:
        if value is None:
            return {"schema": {"type": "string"}} if media_type.startswith("text/") else {}
        if media_type == EVENT_STREAM and isinstance(value, Mapping):
            return {"schema": {"oneOf": [self._event(name, data) for name, data in value.items()]}}
        return {"schema": self._schema(value)}

    def _event(self, name: str, data: Any) -> dict:
        """One Server-Sent Event as schemathesis and OpenAPI 3.2's ``itemSchema`` read it: ``{event, data}``."""
        alternatives = data if isinstance(data, list) else [data]
        choices = [
            {"const": item} if isinstance(item, str)
            else {"contentMediaType": JSON, "contentSchema": self.ref(item)}
            for item in alternatives
        ]
        data_schema = {"type": "string", **(choices[0] if len(choices) == 1 else {"anyOf": choices})}
        return {
            "type": "object",
            "title": name,
            "properties": {"event": {"const": name}, "data": data_schema, "id": {"type": "string"}, "retry": {"type": "integer"}},
            "required": ["event", "data"],
        }

    # --- the document -----------------------------------------------------------

    def document(self) -> dict[str, Any]:
        doc = self.spec.to_dict()
        schemas = doc.get("components", {}).get("schemas", {})
        for key, name in self.marshmallow.converter.refs.items():
            summary = _summary_of(key[0])
            if summary and name in schemas:
                schemas[name].setdefault("description", summary)
        doc["paths"] = dict(sorted(doc.get("paths", {}).items()))
        doc["components"] = {kind: dict(sorted(entries.items())) for kind, entries in sorted(doc["components"].items())}
        order = ("openapi", "info", "tags", "paths", "components")
        return {key: doc[key] for key in (*order, *sorted(set(doc) - set(order))) if key in doc}


def _instance(schema: Any) -> Schema:
    return schema if isinstance(schema, Schema) else schema()


def _summary_of(schema: Any) -> str:
    """The schema class's own docstring (not one it inherits), joined into one paragraph."""
    cls = schema if isinstance(schema, type) else type(schema)
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(line.strip() for line in doc.strip().split("\n\n", 1)[0].splitlines())


def build(app: Flask, core: Iterable[Operation], plugins: Iterable[Operation], **info: Any) -> dict[str, Any]:
    """The document: ``core`` operations whose route exists, then every one of ``plugins`` (``info``: see ``Builder``)."""
    builder = Builder(app, **info)
    for op in core:
        builder.add(op, required=False)
    for op in plugins:
        builder.add(op, required=True)
    return builder.document()
