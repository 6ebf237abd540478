"""The OpenAPI document: generated from the registered functions and the contract, committed as
`openapi.json`, valid OpenAPI 3.1, and saying what the README promises (roles, error codes, headers,
examples, the additions since DESIGN.md section 4). The served copies of Swagger UI match the
pinned npm package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from pydantic import BaseModel, TypeAdapter

import function_app
from functions._contract import OPERATIONS
from functions._http import required_role
from functions._openapi import OUTPUT, build, registered, render, route_prefix
from functions._openapi_parts import resolve
from functions.docs import ASSETS, STATIC
from localdev.functions_index import functions_of
from shared import models
from shared.errors import HTTP_STATUS, AppError

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = functions_of(function_app.app)
HTTP = registered(FUNCTIONS, route_prefix())
DOCUMENT = build(FUNCTIONS, route_prefix())
OPS = {
    op["operationId"]: (path, method, op)
    for path, ops in DOCUMENT["paths"].items()
    for method, op in ops.items()
}


def test_every_registered_http_function_has_a_contract_entry() -> None:
    missing = sorted(f.name for f in HTTP if f.name not in OPERATIONS)
    assert missing == [], f"add these to functions/_contract.py, then run `make openapi`: {missing}"


def test_every_contract_entry_is_a_registered_http_function() -> None:
    stale = sorted(set(OPERATIONS) - {f.name for f in HTTP})
    assert stale == [], f"functions/_contract.py describes functions the app does not register: {stale}"


def test_every_http_function_states_its_role() -> None:
    for function in FUNCTIONS:
        if function.is_http_function():
            required_role(function.get_user_function())  # LookupError: neither endpoint nor anonymous


def test_a_trigger_wrapped_by_neither_has_no_role_to_state() -> None:
    async def bare(req: Any, context: Any) -> None:
        return None

    with pytest.raises(LookupError):
        required_role(bare)


def test_the_committed_document_is_the_generated_one() -> None:
    committed = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
    assert committed == render(DOCUMENT), "openapi.json is stale: run `make openapi`"


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    validate(DOCUMENT, cls=OpenAPIV31SpecValidator)


def test_every_operation_is_documented_with_its_route_and_method() -> None:
    for function in HTTP:
        for method in function.methods:
            operation = DOCUMENT["paths"][function.path][method]
            assert operation["operationId"] == function.name


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_roles_are_stated_as_the_code_demands(name: str) -> None:
    function = next(f for f in HTTP if f.name == name)
    _, _, operation = OPS[name]
    if function.role is None:
        assert operation["x-required-roles"] == []
        assert operation["security"] == []
        assert "**Anonymous**" in operation["description"]
    else:
        assert operation["x-required-roles"] == [function.role.value]
        assert {name for alt in operation["security"] for name in alt} == {
            "entraId",
            "bearerToken",
            "localPrincipal",
        }
        assert f"**Role:** `{function.role.value}`" in operation["description"]
        assert {"401", "403"} <= set(operation["responses"])


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_operation_has_a_request_and_a_response_example(name: str) -> None:
    _, _, operation = OPS[name]
    request = [
        *(
            operation.get("requestBody", {})
            .get("content", {})
            .get("application/json", {})
            .get("examples", {})
        ),
        *(p for p in operation.get("parameters", []) if "example" in p or "$ref" in p),
        *operation["x-codeSamples"],
    ]
    assert request
    answers = [r for status, r in operation["responses"].items() if int(status) < 300]
    for answer in answers:
        for media in answer.get("content", {}).values():
            assert media["examples"], (name, answer)
    assert any(
        "content" in a or int(s) in (204, 302) for s, a in operation["responses"].items() if int(s) < 400
    )


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_error_answers_list_their_codes_with_the_error_shape(name: str) -> None:
    _, _, operation = OPS[name]
    contract = OPERATIONS[name]
    expected: dict[str, set[str]] = {}
    for error in contract.errors:
        code = next(HTTP_STATUS[c] for c in error.__mro__ if c in HTTP_STATUS)
        expected.setdefault(str(code), set()).add(error.code)
    for status, codes in expected.items():
        answer = operation["responses"][status]
        schema = answer["content"]["application/json"]["schema"]
        assert schema["allOf"] == [{"$ref": "#/components/schemas/ErrorBody"}]
        assert set(schema["properties"]["error"]["properties"]["code"]["enum"]) == codes
        assert set(answer["content"]["application/json"]["examples"]) == codes
        assert answer["headers"]["X-Request-Id"] == {"$ref": "#/components/headers/X-Request-Id"}
        for example in answer["content"]["application/json"]["examples"].values():
            assert set(example["value"]["error"]) <= {"code", "message", "requestId", "fields"}
    retry = {"upstream_unavailable", "idempotency_key_in_progress", "rate_limited"}
    for status, codes in expected.items():
        assert ("Retry-After" in operation["responses"][status]["headers"]) == bool(codes & retry)


def test_every_error_class_the_contract_names_has_a_status() -> None:
    for operation in OPERATIONS.values():
        for error in operation.errors:
            assert issubclass(error, AppError)
            assert any(c in HTTP_STATUS for c in error.__mro__ if c is not AppError), error


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_examples_are_valid_for_their_models(name: str) -> None:
    contract = OPERATIONS[name]
    if contract.body is not None:
        model = resolve(contract.body)
        for example in contract.body_examples.values():
            _validate(model, example)
    if contract.query is not None:
        _validate(resolve(contract.query), contract.query_example)
    for answer in contract.answers:
        if answer.model is not None:
            example = (
                answer.example.model_dump(by_alias=True)
                if isinstance(answer.example, BaseModel)
                else answer.example
            )
            _validate(resolve(answer.model), example)


def _validate(model: type[BaseModel] | TypeAdapter[Any], value: Any) -> None:
    if isinstance(model, TypeAdapter):
        model.validate_python(value)
    else:
        model.model_validate(value)


def test_the_additions_since_the_first_contract_are_documented() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    ticket = schemas["TicketView"]["properties"]
    assert {"deletedInServiceNowAt", "status", "failureReason"} <= set(ticket)
    assert ticket["status"]["enum"] == ["creating", "created", "failed"]
    connection = schemas["ConnectionView"]["properties"]
    assert {"refreshTokenExpiresSoon", "syncInProgress", "lastSyncStartedAt"} <= set(connection)

    def codes(name: str, status: str) -> set[str]:
        answer = OPS[name][2]["responses"][status]
        return set(
            answer["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"][
                "enum"
            ]
        )

    create = OPS["tickets_create"][2]
    assert "creating" in json.dumps(create["responses"]["202"])
    assert create["responses"]["202"]["headers"]["Location"]
    assert create["parameters"] == [{"$ref": "#/components/parameters/Idempotency-Key"}]
    assert "idempotency_key_in_progress" in codes("tickets_create", "409")
    assert codes("tickets_create", "413") == {"payload_too_large"}
    assert codes("tickets_create", "415") == {"unsupported_media_type"}
    assert "forbidden_origin" in codes("tickets_create", "403")
    assert {"misconfigured", "dependency_not_configured", "upstream_unavailable"} <= codes(
        "tickets_create", "503"
    )
    assert {"connection_not_ready", "reauthorization_required"} <= codes("sync_now", "409")
    assert "dependency_not_configured" in codes("improvement_actions_list", "503")
    callback = OPS["oauth_callback"][2]["description"]
    assert all(f"`{reason}`" in callback for reason in ("superseded", "authorization_failed"))
    path, method, _ = OPS["cors_preflight"]
    assert (path, method) == ("/api/{path}", "options")
    assert codes("cors_preflight", "403") == {"forbidden_origin"}


def test_remediation_and_the_secure_score_switch_are_documented() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert "remediation" in schemas["TicketView"]["properties"]
    assert set(schemas["RemediationView"]["properties"]) == {
        "status", "score", "maxScore", "checkedAt", "completedAt", "closedAt", "flags", "writeBack",
    }  # fmt: skip
    flags = {"closedWithoutRemediation", "remediatedWhileOpen", "regressed"}
    assert set(schemas["RemediationFlags"]["properties"]) == flags
    assert set(schemas["FlagCounts"]["properties"]) == flags
    assert "flags" in schemas["TicketTypeSummary"]["required"]
    assert set(schemas["SecureScoreView"]["properties"]) == {
        "writeBack",
        "workNotes",
        "checkedAt",
        "pausedUntil",
    }
    update = schemas["SecureScoreUpdate"]
    assert (set(update["properties"]), update["minProperties"]) == ({"writeBack", "workNotes"}, 1)
    assert "secureScore" in schemas["ConnectionView"]["properties"]
    [flag] = [p for p in OPS["tickets_list"][2]["parameters"] if p.get("name") == "flag"]
    assert set(flag["schema"]["enum"]) == flags
    path, method, switch = OPS["provisioning_secure_score"]
    assert (path, method, switch["x-required-roles"]) == (
        "/api/provisioning/secure-score",
        "put",
        ["Connector.Admin"],
    )
    assert "SecurityEvents.ReadWrite.All" in switch["description"]
    assert "connection_not_ready" in json.dumps(switch["responses"]["409"])


def test_security_schemes_cover_easy_auth_and_the_local_principal() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    flow = schemes["entraId"]["flows"]["authorizationCode"]
    assert flow["authorizationUrl"].startswith("https://login.microsoftonline.com/")
    assert list(flow["scopes"]) == ["api://{AUTH_CLIENT_ID}/.default"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    assert (schemes["localPrincipal"]["in"], schemes["localPrincipal"]["name"]) == (
        "header",
        "X-MS-CLIENT-PRINCIPAL",
    )


def test_models_named_by_string_exist_once_their_function_is_registered() -> None:
    registered_names = {f.name for f in HTTP}
    for name, operation in OPERATIONS.items():
        refs = [operation.body, operation.query, *(a.model for a in operation.answers)]
        for ref in refs:
            if isinstance(ref, str) and name in registered_names:
                assert isinstance(getattr(models, ref, None), type), ref


# --- Swagger UI, served by the app -------------------------------------------------------------------

VENDOR = STATIC / "vendor"
NPM_PACKAGE = ROOT / "node_modules" / "swagger-ui-dist"


def test_the_vendored_swagger_ui_is_the_pinned_npm_package() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["swagger-ui-dist"]
    assert (VENDOR / "VERSION").read_text().strip() == pinned, "run `make openapi`"
    assert (VENDOR / "LICENSE").is_file()
    if not NPM_PACKAGE.is_dir():
        pytest.skip("node_modules is not installed (`make setup`)")
    assert json.loads((NPM_PACKAGE / "package.json").read_text())["version"] == pinned
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"):
        assert (VENDOR / name).read_bytes() == (NPM_PACKAGE / name).read_bytes(), (
            f"{name}: run `make openapi`"
        )


def test_every_served_asset_exists_and_nothing_else_is_served() -> None:
    for file, _ in ASSETS.values():
        assert (STATIC / file).is_file(), file
    assert set(DOCUMENT["paths"]["/api/docs/{file}"]["get"]["parameters"][0]["schema"]["enum"]) == set(ASSETS)


def test_the_page_loads_only_files_the_app_serves() -> None:
    page = (STATIC / "index.html").read_text()
    assert "<script>" not in page  # no inline script: the policy forbids it
    sources = [part.split('"')[1] for part in page.split("src=")[1:]] + [
        part.split('"')[1] for part in page.split("href=")[1:]
    ]
    assert sources
    assert all(source.removeprefix("/api/docs/") in ASSETS for source in sources), sources
    assert "validatorUrl: null" in (STATIC / "docs.js").read_text()
