"""CORS as the app answers it (functions/_cors.py, functions/cors.py): preflights on every route,
and the headers an allowed origin's page needs on every other answer."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

import function_app
from functions import cors
from functions._http import endpoint, json_response
from localdev.functions_index import functions_of
from localdev.host import LocalContext
from shared.identity import Caller, Role, encode_principal

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
USER = "00000000-0000-0000-0000-0000000000aa"
APP_URL = "http://127.0.0.1:7071"
PORTAL = "http://127.0.0.1:3000"  # BASE_ENV's PORTAL_URL
pytestmark = pytest.mark.usefixtures("app_env")


def options(path: str = "/api/tickets", **headers: str) -> func.HttpRequest:
    return func.HttpRequest(
        "OPTIONS",
        f"{APP_URL}{path}",
        headers={"Host": "127.0.0.1:7071", **headers},
        route_params={"path": path.removeprefix("/api/")},
        body=b"",
    )


async def preflight(req: func.HttpRequest) -> func.HttpResponse:
    response: func.HttpResponse = await cors.cors_preflight(req, LocalContext("inv-cors", "cors_preflight"))
    return response


def cors_headers(response: func.HttpResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def browser_preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type,idempotency-key,x-ms-client-principal",
    }


# --- preflights ----------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [PORTAL, "http://localhost:3000", APP_URL])
async def test_a_preflight_from_an_allowed_origin_is_answered(origin: str) -> None:
    response = await preflight(options(**browser_preflight(origin)))
    assert response.status_code == 204
    assert response.headers["Vary"] == "Origin"
    assert cors_headers(response) == {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "GET, POST, PUT, DELETE",
        "access-control-allow-headers": "Content-Type, Idempotency-Key, Authorization, X-MS-CLIENT-PRINCIPAL",
        "access-control-max-age": "3600",
    }
    assert response.headers["X-Request-Id"] == "inv-cors"


async def test_the_principal_header_is_allowed_only_for_local_development(
    app_env: pytest.MonkeyPatch,
) -> None:
    app_env.setenv("LOCAL_DEV", "false")
    app_env.setenv("CORS_ALLOWED_ORIGINS", "https://portal.example.com")
    response = await preflight(options(**browser_preflight("https://portal.example.com")))
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://portal.example.com"
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type, Idempotency-Key, Authorization"


@pytest.mark.parametrize(
    "origin", ["https://evil.example.com", "null", "http://127.0.0.1:7072", "https://127.0.0.1:3000"]
)
async def test_a_preflight_from_another_origin_gets_no_cors_headers(origin: str) -> None:
    response = await preflight(options(**browser_preflight(origin)))
    assert response.status_code == 403
    assert cors_headers(response) == {}
    body = json.loads(response.get_body())
    assert (body["error"]["code"], body["error"]["requestId"]) == ("forbidden_origin", "inv-cors")
    assert response.headers["Vary"] == "Origin"


async def test_options_without_an_origin_is_not_a_cors_request() -> None:
    response = await preflight(options())
    assert response.status_code == 204
    assert response.headers["Allow"] == "GET, POST, PUT, DELETE, OPTIONS"
    assert cors_headers(response) == {}


async def test_a_preflight_needs_no_principal_even_where_easy_auth_would_be_trusted(
    app_env: pytest.MonkeyPatch,
) -> None:
    app_env.setenv("WEBSITE_AUTH_ENABLED", "True")
    response = await preflight(options("/api/provisioning", **browser_preflight(PORTAL, "PUT")))
    assert (response.status_code, response.headers["Access-Control-Allow-Origin"]) == (204, PORTAL)


def test_options_on_every_route_is_served_by_the_catch_all_preflight() -> None:
    http = [f for f in functions_of(function_app.app) if f.is_http_function()]
    by_name = {f.get_function_name(): f.get_trigger() for f in http}
    trigger: Any = by_name["cors_preflight"]
    assert trigger.route == "{*path}"
    assert [str(getattr(m, "value", m)) for m in trigger.methods] == ["OPTIONS"]
    assert str(getattr(trigger.auth_level, "value", trigger.auth_level)).upper() == "ANONYMOUS"
    others: list[Any] = [t for name, t in by_name.items() if name != "cors_preflight"]
    # No other function takes OPTIONS, so the host's routing falls through to the catch-all.
    assert all(
        t.methods and "OPTIONS" not in {str(getattr(m, "value", m)) for m in t.methods} for t in others
    )


# --- the other answers ---------------------------------------------------------------------------


@endpoint(Role.READ)
async def reader(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    return json_response({"tenant": caller.tenant_id})


async def read(headers: dict[str, str], *, principal: bool = True) -> func.HttpResponse:
    all_headers = {"Host": "127.0.0.1:7071", **headers}
    if principal:
        all_headers["X-MS-CLIENT-PRINCIPAL"] = encode_principal(TENANT, USER, [Role.READ.value])
    req = func.HttpRequest("GET", f"{APP_URL}/api/x", headers=all_headers, body=b"")
    response: func.HttpResponse = await reader(req, LocalContext("inv-read", "reader"))
    return response


@pytest.mark.parametrize("principal", [True, False], ids=["ok", "error"])
async def test_answers_to_an_allowed_origin_carry_what_its_page_may_read(principal: bool) -> None:
    response = await read({"Origin": PORTAL}, principal=principal)
    assert response.status_code == (200 if principal else 401)
    assert response.headers["Vary"] == "Origin"
    assert cors_headers(response) == {
        "access-control-allow-origin": PORTAL,
        "access-control-expose-headers": "Location, Retry-After, X-Request-Id",
    }


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example.com"}, {}], ids=["other", "none"])
async def test_answers_to_other_origins_carry_no_cors_headers(headers: dict[str, str]) -> None:
    response = await read(headers)
    assert response.status_code == 200  # a read is judged by its credentials; the browser hides it
    assert cors_headers(response) == {}
    assert response.headers["Vary"] == "Origin"


async def test_a_misconfigured_app_still_answers_its_own_origin(app_env: pytest.MonkeyPatch) -> None:
    app_env.setenv("CORS_ALLOWED_ORIGINS", "*")
    response = await read({"Origin": APP_URL})
    assert response.status_code == 503
    assert response.headers["Access-Control-Allow-Origin"] == APP_URL
    other = await read({"Origin": PORTAL})
    assert other.status_code == 503
    assert cors_headers(other) == {}
