"""The pieces of the OpenAPI document that vary by operation (`functions/_openapi.py` assembles
them): schemas from the pydantic models, parameters, answers, errors from `shared/errors.py`, and
code samples."""

from __future__ import annotations

import json
import shlex
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from functions._contract_types import Answer, ModelRef, Operation
from functions._openapi_components import (
    BASE_URL,
    COMPONENT_PARAMETERS,
    EXAMPLE_REQUEST_ID,
    PATH_PARAMETER,
    REF,
    ErrorBody,
    SchemaGenerator,
)
from shared import models
from shared.errors import AppError, BadRequest, Misconfigured, error_body, error_headers, status_for
from shared.identity import Role


def resolve(ref: ModelRef) -> type[BaseModel] | TypeAdapter[Any]:
    """A model given by name lives in `shared.models` (LookupError when it does not exist)."""
    if isinstance(ref, str):
        found = getattr(models, ref, None)
        if not (isinstance(found, type) and issubclass(found, BaseModel)):
            raise LookupError(f"shared.models has no model {ref}")
        return found
    return ref


class Schemas:
    """The component schemas of every model the operations use, and references to them."""

    def __init__(self, operations: list[Operation]) -> None:
        keys: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
        for operation in operations:
            uses = [(operation.body, "validation"), *((a.model, a.mode) for a in operation.answers)]
            for ref, mode in uses:
                target = resolve(ref) if ref is not None else None
                if isinstance(target, type) and (target, mode) not in keys:
                    keys.append((target, mode))
        refs, definitions = models_json_schema(
            keys, by_alias=True, ref_template=REF, schema_generator=SchemaGenerator
        )
        self._refs = refs
        self._definitions: dict[str, Any] = dict(definitions.get("$defs", {}))

    def schema(self, ref: ModelRef, mode: JsonSchemaMode) -> dict[str, Any]:
        target = resolve(ref)
        if isinstance(target, TypeAdapter):
            return self._inline(
                target.json_schema(
                    mode=mode, by_alias=True, ref_template=REF, schema_generator=SchemaGenerator
                )
            )
        return dict(self._refs[(target, mode)])

    def _inline(self, schema: dict[str, Any]) -> dict[str, Any]:
        for name, definition in schema.pop("$defs", {}).items():
            if self._definitions.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are named {name}")
        return schema

    def components(self) -> dict[str, Any]:
        return {name: self._definitions[name] for name in sorted(self._definitions)}

    def parameters(self, operation: Operation, path: str) -> list[dict[str, Any]]:
        found = [self._path_parameter(operation, name) for name in PATH_PARAMETER.findall(path)]
        if operation.query is not None:
            found.extend(self._query_parameters(operation))
        found.extend({"$ref": f"#/components/parameters/{name}"} for name in operation.request_headers)
        return found

    @staticmethod
    def _path_parameter(operation: Operation, name: str) -> dict[str, Any]:
        spec = operation.path[name]  # KeyError: the contract does not describe a route value
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if spec.enum:
            schema["enum"] = list(spec.enum)
        return {
            "name": name,
            "in": "path",
            "required": True,
            "description": spec.description,
            "schema": schema,
            "example": spec.example,
        }

    def _query_parameters(self, operation: Operation) -> list[dict[str, Any]]:
        assert operation.query is not None
        model = resolve(operation.query)
        assert isinstance(model, type)
        schema = self._inline(
            model.model_json_schema(
                mode="validation", by_alias=True, ref_template=REF, schema_generator=SchemaGenerator
            )
        )
        required = set(schema.get("required", []))
        parameters = []
        for name, field in schema["properties"].items():
            parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            parameter["schema"] = _query_schema(field) if operation.query_enforced else {"type": "string"}
            if name in operation.query_example:
                parameter["example"] = operation.query_example[name]
            parameters.append(parameter)
        return parameters

    def request_body(self, operation: Operation) -> dict[str, Any]:
        assert operation.body is not None
        examples = {name: {"value": value} for name, value in operation.body_examples.items()}
        content = {"schema": self.schema(operation.body, "validation"), "examples": examples}
        return {"required": True, "content": {"application/json": content}}


def _query_schema(field: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value, never null: `X | None` becomes `X`."""
    schema = {key: value for key, value in field.items() if key != "title"}
    if schema.get("default", 0) is None:
        del schema["default"]
    options = [option for option in schema.pop("anyOf", []) if option != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    return schema


def _example(value: Any) -> Any:
    return json.loads(value.model_dump_json(by_alias=True)) if isinstance(value, BaseModel) else value


def _headers(names: tuple[str, ...]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in ("X-Request-Id", *names)}


def success_responses(operation: Operation, schemas: Schemas) -> dict[str, Any]:
    """The answers by status; answers of one status with other media types share its entry."""
    responses: dict[str, Any] = {}
    for answer in operation.answers:
        entry = responses.setdefault(str(answer.status), {"description": answer.description})
        if entry["description"] != answer.description:
            entry["description"] += f" Or: {answer.description}"
        entry["headers"] = {**entry.get("headers", {}), **_headers(answer.headers)}
        body = _body(answer, schemas)
        if body is not None:
            entry.setdefault("content", {})[answer.media_type] = body
    return responses


def _body(answer: Answer, schemas: Schemas) -> dict[str, Any] | None:
    if answer.model is not None:
        schema = schemas.schema(answer.model, answer.mode)
    elif answer.schema is not None:
        schema = answer.schema
    else:
        return None
    return {"schema": schema, "examples": {"example": {"value": _example(answer.example)}}}


def sample(error: type[AppError]) -> AppError:
    """An instance of each error, to read its code, status, body and headers from `shared.errors`."""
    if error is Misconfigured:
        return Misconfigured(["PORTAL_URL: must be an http(s) URL with a host"])
    if error is BadRequest:
        problem = {"field": "dueDate", "message": "must be a date in the form YYYY-MM-DD"}
        return BadRequest(
            f"The request is not valid: {problem['field']}: {problem['message']}", fields=[problem]
        )
    return error()


def error_responses(errors: tuple[type[AppError], ...]) -> dict[str, Any]:
    """Per status, the codes the operation can answer there, each with an example body."""
    by_status: dict[int, dict[str, AppError]] = {}
    for error in errors:
        instance = sample(error)
        by_status.setdefault(status_for(instance), {}).setdefault(instance.code, instance)
    return {str(status): _error_response(by_code) for status, by_code in sorted(by_status.items())}


def _error_response(by_code: dict[str, AppError]) -> dict[str, Any]:
    codes = sorted(by_code)
    retry = [code for code in codes if "Retry-After" in error_headers(by_code[code])]
    lines = [f"- `{code}`: {_meaning(by_code[code])}" for code in codes]
    schema = {
        "allOf": [{"$ref": REF.format(model="ErrorBody")}],
        "properties": {"error": {"properties": {"code": {"type": "string", "enum": codes}}}},
    }
    examples = {}
    for code in codes:
        body = error_body(by_code[code])
        body["error"]["requestId"] = EXAMPLE_REQUEST_ID
        examples[code] = {"value": body}
    return {
        "description": "\n".join(lines),
        "headers": _headers(("Retry-After",) if retry else ()),
        "content": {"application/json": {"schema": schema, "examples": examples}},
    }


def _meaning(error: AppError) -> str:
    if isinstance(error, Misconfigured):
        return "An app setting fails validation; the message names the settings and rules. An operator must fix it."
    return error.default_message


def code_sample(operation: Operation, method: str, path: str, role: Role | None) -> dict[str, str]:
    """A curl command made of the operation's first examples."""
    for name, parameter in operation.path.items():
        path = path.replace("{" + name + "}", parameter.example)
    query = urlencode(
        {k: json.dumps(v) if isinstance(v, bool) else v for k, v in operation.query_example.items()}
    )
    parts = [f"curl -i -X {method.upper()} {shlex.quote(BASE_URL + path + ('?' + query if query else ''))}"]
    if role is not None:
        parts.append("-H " + shlex.quote("Authorization: Bearer <token for api://<AUTH_CLIENT_ID>>"))
    for name in operation.request_headers:
        parts.append("-H " + shlex.quote(f"{name}: {COMPONENT_PARAMETERS[name]['example']}"))
    if operation.body_examples:
        body = json.dumps(next(iter(operation.body_examples.values())), separators=(",", ":"))
        parts += ["-H 'Content-Type: application/json'", "-d " + shlex.quote(body)]
    return {"lang": "Shell", "label": "curl", "source": " \\\n  ".join(parts)}
