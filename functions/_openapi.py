"""Builds the OpenAPI 3.1 document of the HTTP API from the registered functions and the contract.

Routes and methods come from the app's registered HTTP functions (as the worker indexes them), the
role each needs from `_http.required_role`, everything else from `functions/_contract.py`, and the
schemas from the pydantic models (`models_json_schema(by_alias=True)`), so the document cannot
drift from the code: `tests/unit/test_openapi.py` fails when the committed `openapi.json` differs
from what this builds. `make openapi` (`python -m functions._openapi`) writes it.

Used offline only (the app serves the committed file); the parts are in `_openapi_parts.py` and
`_openapi_components.py`.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions._contract import OPERATIONS
from functions._contract_types import Operation
from functions._http import required_role
from functions._openapi_components import (
    COMPONENT_HEADERS,
    COMPONENT_PARAMETERS,
    INFO_DESCRIPTION,
    SECURITY_SCHEMES,
    role_text,
    security_of,
)
from functions._openapi_parts import Schemas, code_sample, error_responses, success_responses
from shared.identity import Role

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "openapi.json"
METHOD_ORDER = ("get", "put", "post", "patch", "delete", "options", "head")


@dataclass(frozen=True)
class Registered:
    """One registered HTTP function: name, route (prefix included, `{name}` parameters), methods."""

    name: str
    path: str
    methods: tuple[str, ...]
    role: Role | None


def registered(functions: Iterable[Any], route_prefix: str) -> list[Registered]:
    """The HTTP functions among `app.get_functions()` (or `localdev.functions_index.functions_of`)."""
    found: list[Registered] = []
    for function in functions:
        if not function.is_http_function():
            continue
        trigger: Any = function.get_trigger()
        methods = tuple(sorted(str(getattr(m, "value", m)).lower() for m in trigger.methods or []))
        segments = [_segment(part) for part in str(trigger.route).split("/") if part]
        path = "/" + "/".join([route_prefix.strip("/"), *segments] if route_prefix.strip("/") else segments)
        role = required_role(function.get_user_function())
        found.append(Registered(function.get_function_name(), path, methods, role))
    return found


def _segment(part: str) -> str:
    """`{*path}` (catch-all) and `{id:int}` (constrained) are plain `{path}`, `{id}` in OpenAPI."""
    if part.startswith("{") and part.endswith("}"):
        return "{" + part[1:-1].lstrip("*").split(":")[0].rstrip("?") + "}"
    return part


def missing_operations(functions: list[Registered]) -> list[str]:
    return sorted(f.name for f in functions if f.name not in OPERATIONS)


def build(functions: Iterable[Any], route_prefix: str = "api") -> dict[str, Any]:
    """The document. Raises LookupError: a registered HTTP function has no contract entry."""
    http = registered(functions, route_prefix)
    missing = missing_operations(http)
    if missing:
        raise LookupError(f"HTTP functions without an entry in functions/_contract.py: {', '.join(missing)}")
    schemas = Schemas([OPERATIONS[f.name] for f in http])
    paths: dict[str, dict[str, Any]] = {}
    for function in sorted(http, key=lambda f: f.path):
        for method in function.methods:
            paths.setdefault(function.path, {})[method] = _operation(function, method, schemas)
    for path, operations in paths.items():
        paths[path] = {m: operations[m] for m in METHOD_ORDER if m in operations}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ServiceNow ticketing connector API",
            "version": _version(),
            "description": INFO_DESCRIPTION,
            "license": {"name": "Proprietary", "identifier": "LicenseRef-Proprietary"},
        },
        "servers": [{"url": "/", "description": "this app"}],
        "tags": [{"name": tag} for tag in sorted({OPERATIONS[f.name].tag for f in http})],
        "paths": paths,
        "components": {
            "schemas": schemas.components(),
            "parameters": COMPONENT_PARAMETERS,
            "headers": COMPONENT_HEADERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _operation(function: Registered, method: str, schemas: Schemas) -> dict[str, Any]:
    contract: Operation = OPERATIONS[function.name]
    operation: dict[str, Any] = {
        "operationId": function.name,
        "summary": contract.summary,
        "description": f"{contract.description}\n\n{role_text(function.role)}",
        "tags": [contract.tag],
        "x-required-roles": [] if function.role is None else [function.role.value],
        "security": security_of(function.role),
    }
    parameters = schemas.parameters(contract, function.path)
    if parameters:
        operation["parameters"] = parameters
    if contract.body is not None:
        operation["requestBody"] = schemas.request_body(contract)
    responses = {**success_responses(contract, schemas), **error_responses(contract.errors)}
    operation["responses"] = {status: responses[status] for status in sorted(responses)}
    operation["x-codeSamples"] = [code_sample(contract, method, function.path, function.role)]
    return operation


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def render(document: dict[str, Any]) -> str:
    """Pretty-printed JSON; the key order is the builder's, which is stable."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def route_prefix() -> str:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    return str(host.get("extensions", {}).get("http", {}).get("routePrefix", "api"))


def main() -> None:
    """`make openapi`: write `openapi.json` (`--check`: only tell whether it is up to date)."""
    import function_app  # the app is only needed when run as a program

    text = render(build(function_app.app.get_functions(), route_prefix()))
    if "--check" in sys.argv[1:]:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            sys.exit("openapi.json is stale: run `make openapi`")
        return
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text.encode())} bytes)")


if __name__ == "__main__":
    main()
