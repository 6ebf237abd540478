"""The rules every HTTP trigger shares (functions/_http.py) and the hostile-input helpers behind
them (shared/untrusted.py): bounded JSON, origins, content types, request ids, escaped echoes."""

from __future__ import annotations

import base64
import json
from typing import Any

import azure.functions as func
import pytest

from functions._http import endpoint, json_response, parse_body, validate
from localdev.host import LocalContext
from shared.errors import BadRequest, Misconfigured, Unauthenticated
from shared.identity import Caller, Role, caller_from_headers, encode_principal
from shared.models import StateNamesUpdate, TicketListQuery
from shared.settings import get_settings
from shared.stores.tickets import decode_continuation, encode_continuation
from shared.untrusted import decode_json, escape_text, origin_of

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
USER = "00000000-0000-0000-0000-0000000000aa"
APP_URL = "http://127.0.0.1:7071"
DEEP = b"[" * 1000
pytestmark = pytest.mark.usefixtures("app_env")


# --- decode_json --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(DEEP, id="deep-array"),
        pytest.param(b'{"a":' * 40 + b"1" + b"}" * 40, id="deep-object"),
        pytest.param(b"[" * 33 + b"]" * 33, id="one-level-too-deep"),
        pytest.param(b'"\\ud800"', id="lone-surrogate"),
        pytest.param(b'{"\\udfff": 1}', id="lone-surrogate-key"),
        pytest.param(b"NaN", id="nan"),
        pytest.param(b"[Infinity]", id="infinity"),
        pytest.param(b"9" * 5000, id="huge-integer"),
        pytest.param(b'{"a": 1', id="truncated"),
        pytest.param(b"\xff\xfe{}", id="not-unicode-json"),
        pytest.param(b'"' + b'\\"' * 30_000, id="unterminated-escapes"),
        pytest.param(b" " * 70_000, id="too-large"),
    ],
)
def test_hostile_json_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is exactly "a ValueError"
        decode_json(raw, max_bytes=64 * 1024)


def test_ordinary_json_decodes() -> None:
    assert decode_json(b"[" * 32 + b"]" * 32, max_bytes=100) is not None
    assert decode_json('{"name": "Zoë \\u00e9 [x]"}'.encode(), max_bytes=100) == {"name": "Zoë é [x]"}
    assert decode_json("\ufeff{}".encode(), max_bytes=100) == {}


def test_deep_principal_is_unauthenticated() -> None:
    header = base64.b64encode(DEEP).decode()
    with pytest.raises(Unauthenticated):
        caller_from_headers({"X-MS-CLIENT-PRINCIPAL": header}, trusted=True)


def test_deep_or_forged_continuation_tokens_are_a_400() -> None:
    for payload in (DEEP, json.dumps({"t": TENANT, "pk": "p\x00", "rk": "r"}).encode()):
        token = base64.urlsafe_b64encode(payload).decode()
        with pytest.raises(BadRequest):
            decode_continuation(token, TENANT)
    token = encode_continuation({"PartitionKey": "1!8!cDE-", "RowKey": "cjI="}, TENANT)
    assert decode_continuation(token, TENANT) == {"PartitionKey": "1!8!cDE-", "RowKey": "cjI="}


# --- escaping what is echoed -----------------------------------------------------------------------


def test_escape_text_makes_control_and_bidi_characters_visible() -> None:
    assert escape_text("a\r\nb\x1b[31m\u202ec\u2028") == "a\\u000d\\u000ab\\u001b[31m\\u202ec\\u2028"
    assert escape_text("x" * 500, limit=10) == "x" * 9 + "…"


def test_query_parameter_names_are_escaped_in_the_validation_error() -> None:
    with pytest.raises(BadRequest) as refused:
        validate(TicketListQuery, {"top\nINFO forged line": "1"})
    assert "\n" not in refused.value.message
    assert "top\\u000aINFO forged line" in refused.value.message


def test_a_body_with_thousands_of_bad_keys_gets_a_bounded_answer() -> None:
    body = json.dumps({f"k{i}\x07": "x" for i in range(2000)}).encode()
    request = func.HttpRequest("PUT", f"{APP_URL}/api/x", body=body)
    with pytest.raises(BadRequest) as refused:
        parse_body(request, StateNamesUpdate)
    assert len(refused.value.fields) <= 20
    assert len(refused.value.message) < 20 * 250
    assert "\x07" not in refused.value.message


# --- the endpoint wrapper --------------------------------------------------------------------------


@endpoint(Role.ADMIN)
async def admin_echo(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    body = parse_body(req, StateNamesUpdate) if req.get_body() else None
    return json_response({"tenant": caller.tenant_id, "body": body is not None})


def request(method: str = "PUT", body: Any = None, **headers: str) -> func.HttpRequest:
    principal = encode_principal(TENANT, USER, [Role.ADMIN.value])
    raw = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {"X-MS-CLIENT-PRINCIPAL": principal, "Host": "127.0.0.1:7071", **headers}
    return func.HttpRequest(method, f"{APP_URL}/api/x", headers=all_headers, body=raw)


async def call(req: func.HttpRequest) -> tuple[int, dict[str, Any], func.HttpResponse]:
    response: func.HttpResponse = await admin_echo(req, LocalContext("inv-123", "admin_echo"))
    return response.status_code, json.loads(response.get_body() or b"null"), response


async def test_every_response_carries_the_request_id() -> None:
    status, _, ok = await call(request(body={"incident": {}}, **{"Content-Type": "application/json"}))
    assert status == 200
    assert ok.headers["X-Request-Id"] == "inv-123"
    status, body, failed = await call(request(body=DEEP))
    assert status == 400
    assert body["error"]["requestId"] == "inv-123"
    assert failed.headers["X-Request-Id"] == "inv-123"


async def test_deep_json_body_is_a_400() -> None:
    status, body, _ = await call(request(body=DEEP, **{"Content-Type": "application/json"}))
    assert (status, body["error"]["code"]) == (400, "validation_error")


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;Charset=UTF-8", None],
)
async def test_json_bodies_are_accepted(content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, body, _ = await call(request(body={"incident": {}}, **headers))
    assert (status, body) == (200, {"tenant": TENANT, "body": True})


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonp",
        "",
    ],
)
async def test_other_content_types_are_a_415(content_type: str) -> None:
    status, body, _ = await call(request(body={"incident": {}}, **{"Content-Type": content_type}))
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")


async def test_a_request_without_a_body_needs_no_content_type() -> None:
    status, _, _ = await call(request("DELETE", **{"Content-Type": "text/plain"}))
    assert status == 200


@pytest.mark.parametrize(
    ("origin", "headers"),
    [
        (APP_URL, {}),
        ("http://127.0.0.1:3000", {}),  # PORTAL_URL's origin
        ("http://localhost:3000", {}),  # LOCAL_DEV
        ("https://app.example.com", {"X-Forwarded-Proto": "https", "Host": "app.example.com"}),
        ("https://app.example.com:443", {"X-Forwarded-Proto": "https", "Host": "APP.example.com"}),
        (
            "https://front.example.com",
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "front.example.com"},
        ),
    ],
)
async def test_state_changes_from_allowed_origins_pass(origin: str, headers: dict[str, str]) -> None:
    status, _, _ = await call(request("DELETE", Origin=origin, **headers))
    assert status == 200


@pytest.mark.parametrize(
    ("origin", "headers"),
    [
        ("https://evil.example.com", {}),
        ("null", {}),
        ("", {}),
        ("http://127.0.0.1:7072", {}),
        ("https://127.0.0.1:7071", {}),  # same host, other scheme
        ("https://evil.example.com", {"X-Forwarded-Host": "evil.example.com, 127.0.0.1:7071"}),
        ("https://app.example.com", {"X-Forwarded-Proto": "https, http", "Host": "app.example.com"}),
    ],
)
async def test_state_changes_from_other_origins_are_a_403(origin: str, headers: dict[str, str]) -> None:
    status, body, _ = await call(request("DELETE", Origin=origin, **headers))
    assert (status, body["error"]["code"]) == (403, "forbidden_origin")
    assert body["error"]["requestId"] == "inv-123"


async def test_reads_and_requests_without_origin_are_judged_by_credentials_alone() -> None:
    status, _, _ = await call(request("GET", Origin="https://evil.example.com"))
    assert status == 200
    anonymous = func.HttpRequest("DELETE", f"{APP_URL}/api/x", headers={"Host": "127.0.0.1:7071"}, body=b"")
    status, body, _ = await call(anonymous)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")


# --- CORS_ALLOWED_ORIGINS ---------------------------------------------------------------------------


def test_allowed_origins_default_to_the_portal(app_env: pytest.MonkeyPatch) -> None:
    assert get_settings().allowed_origins == {"http://127.0.0.1:3000", "http://localhost:3000"}
    app_env.setenv("LOCAL_DEV", "false")
    app_env.setenv("PORTAL_URL", "https://portal.example.com/connectors/servicenow")
    get_settings.cache_clear()
    assert get_settings().allowed_origins == {"https://portal.example.com"}


def test_allowed_origins_setting_replaces_the_default(app_env: pytest.MonkeyPatch) -> None:
    app_env.setenv("CORS_ALLOWED_ORIGINS", " https://A.example.com , https://b.example.com:8443/,")
    get_settings.cache_clear()
    assert get_settings().allowed_origins == {"https://a.example.com", "https://b.example.com:8443"}


@pytest.mark.parametrize(
    "value", ["*", "portal.example.com", "ftp://x.example.com", "https://x.example.com:0x1"]
)
def test_a_bad_allowed_origin_is_a_misconfiguration_naming_the_setting(
    app_env: pytest.MonkeyPatch, value: str
) -> None:
    app_env.setenv("CORS_ALLOWED_ORIGINS", value)
    get_settings.cache_clear()
    with pytest.raises(Misconfigured) as misconfigured:
        get_settings()
    assert any(problem.startswith("CORS_ALLOWED_ORIGINS") for problem in misconfigured.value.problems)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Portal.Example.com:443/x?y#z", "https://portal.example.com"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("null", None),
        ("https://user@example.com", None),
        ("https://example.com:99999", None),
        ("file:///etc/passwd", None),
        ("https://exa mple.com", None),
    ],
)
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin
