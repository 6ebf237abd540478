"""Hostile input to every HTTP endpoint the app registers: never a 5xx, always the error body with
a request id, nothing stored, and the app still healthy afterwards.

The endpoints are read from the app's registered functions (`app.get_functions()`, as the local
host and the Python worker read them), so a new endpoint is fuzzed without a change here. Each
(route, method) gets `FUZZ_EXAMPLES` generated requests (default 40; `FUZZ_EXAMPLES=500` for a
long run): deep, huge, empty and non-JSON bodies, JSON of the wrong shape with control characters
and overlong strings, wrong content types, foreign origins, bad route values and query values,
forged continuation tokens, and principals that are missing, unusable or lack the role. The
caller is mostly the tenant's admin (every role), so requests get past authorization and reach
validation. Every generated JSON object carries a key no model knows, so none of them is valid:
nothing may be stored, whatever the endpoint.

Hypothesis drives a synchronous client in a worker thread while the host serves on the test's
event loop; a failure is reported with the smallest request that shows it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import function_app
from localdev.functions_index import ALL_METHODS, functions_of
from localdev.host import HostConfig
from shared import models
from shared.identity import PRINCIPAL_HEADER, encode_principal
from tests.e2e import api
from tests.e2e.conftest import REPO_ROOT, Stack

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
ROUTE_PREFIX = HostConfig.load(REPO_ROOT / "host.json").route_prefix
_PARAMETER = re.compile(r"\{[^}]+\}")
# What an error body must never carry unescaped: text a caller chose could forge log lines.
_UNESCAPED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
POISON_KEY = "\x00notAField\u202e"  # no request model has it: every generated object is invalid


@dataclass(frozen=True)
class Target:
    function: str
    method: str
    route: str  # host.json prefix included, parameters as `{name}`

    def __str__(self) -> str:
        return f"{self.method} /{self.route}"


def http_targets() -> list[Target]:
    """Every (route, method) the app registers, read as the worker reads it."""
    targets: list[Target] = []
    for function in functions_of(function_app.app):
        if not function.is_http_function():
            continue
        trigger: Any = function.get_trigger()
        methods = sorted(str(getattr(m, "value", m)).upper() for m in (trigger.methods or [])) or sorted(
            ALL_METHODS
        )
        route = "/".join(part.strip("/") for part in (ROUTE_PREFIX, trigger.route) if part.strip("/"))
        targets.extend(Target(function.get_function_name(), method, route) for method in methods)
    return targets


TARGETS = http_targets()


# --- strategies ---------------------------------------------------------------------------------


def model_keys() -> list[str]:
    """The wire names of every API model's fields (query parameters included), so that generated
    objects and queries hit real fields; a new model's fields join automatically."""
    names: set[str] = set()
    for model in vars(models).values():
        if isinstance(model, type) and issubclass(model, BaseModel):
            names.update(info.alias or name for name, info in model.model_fields.items())
    return sorted(names)


KNOWN_KEYS = model_keys()
hostile_text = st.one_of(
    st.text(max_size=40),  # every Unicode character but surrogates: controls, bidi, NUL
    st.sampled_from(["", " ", ".", "..", "-1", "1e999", "0x10", "null", "https://x.service-now.com:abc"]),
    st.integers(min_value=200, max_value=5000).map(lambda n: "\u202e\n" * 2 + "x" * n),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=20))
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), hostile_text
)
small_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)),
    max_leaves=8,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=12,
)


def _invalid(value: Any) -> Any:
    return {**value, POISON_KEY: 1} if isinstance(value, dict) else value


def _deep(depth: int, opener: str) -> bytes:
    if opener == "[":
        return ("[" * depth + "]" * depth).encode()
    return ('{"a":' * depth + "1" + "}" * depth).encode()


bodies = st.one_of(
    json_values.map(_invalid).map(lambda value: json.dumps(value).encode()),
    st.builds(_deep, st.integers(min_value=33, max_value=20_000), st.sampled_from(["[", "{"])),
    st.integers(min_value=64 * 1024 + 1, max_value=200_000).map(lambda n: b'{"name": "' + b"x" * n + b'"}'),
    st.sampled_from([b"", b" ", b"\n", b"null", b"[]", b"{}", b'"\\ud800"', b"NaN", b"{", b"\xff\xfe{}"]),
    st.binary(max_size=200),
)
# Header values the HTTP client can put on the wire: visible ASCII and Latin-1 bytes.
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
    st.text(st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=20),
).map(lambda text: text.encode("latin-1"))
content_types = st.one_of(
    st.just(b"application/json"),
    st.sampled_from(
        [
            b"text/plain",
            b"text/plain;charset=UTF-8",
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"application/json; charset=latin-1",
            b"",
        ]
    ),
    header_values,
)
# Percent-encoded text and bytes (invalid UTF-8 included). Never `/`, which would make another
# path, nor a newline: the local host's catch-all route (aiohttp, `.*`) does not match one.
route_values = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="/\n"), min_size=1, max_size=300)
    .filter(lambda text: text.strip("."))  # `.` and `..` are path segments the client resolves
    .map(lambda text: quote(text, safe="")),
    st.binary(min_size=1, max_size=60)
    .filter(lambda raw: b"/" not in raw and b"\n" not in raw and raw.strip(b"."))
    .map(lambda raw: quote(raw, safe="")),
)


def _token(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def query_values(tenant: str) -> st.SearchStrategy[str]:
    # Three of these stay under the HTTP server's 8 KB request line (longer ones are its own 4xx).
    forged = st.builds(
        lambda pk, rk: json.dumps({"t": tenant, "pk": pk, "rk": rk}).encode(),
        small_json_values,
        small_json_values,
    )
    return st.one_of(
        hostile_text.filter(lambda text: len(text) < 1200),
        st.integers().map(str),
        st.one_of(forged, st.builds(_deep, st.integers(33, 600), st.just("["))).map(_token),
    )


def principals(tenant: str) -> st.SearchStrategy[bytes | None]:
    def principal(roles: list[str]) -> bytes:
        return encode_principal(tenant, "00000000-0000-0000-0000-0000000000ad", roles, name="Fuzz").encode()

    admin = principal(["Connector.Admin"])
    return st.one_of(
        st.just(admin),
        st.none(),
        st.sampled_from([principal([]), principal(["Tickets.Read"])]),
        header_values,
        small_json_values.map(lambda value: base64.b64encode(json.dumps(value).encode())),
        # Kept under the HTTP server's 8 KB header limit (the platform's is similar).
        st.builds(_deep, st.integers(33, 2000), st.just("[")).map(base64.b64encode),
        st.builds(_deep, st.integers(33, 900), st.just("{")).map(base64.b64encode),
    )


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, bytes]
    body: bytes

    def __repr__(self) -> str:
        headers = {name: value[:120] for name, value in self.headers.items()}
        return (
            f"{self.method} {self.path} params={self.params!r} headers={headers!r} body={self.body[:300]!r}"
        )


FAULTS = ["body", "query", "principal", "content_type", "origin", "headers", "all"]


def requests_for(target: Target, tenant: str, own_origin: str) -> st.SearchStrategy[Sent]:
    """Requests with one kind of fault (or all at once) on an otherwise ordinary admin request, so
    most of them get past the principal and content-type checks and reach validation."""
    admin = encode_principal(tenant, "00000000-0000-0000-0000-0000000000ad", ["Connector.Admin"]).encode()
    origins = st.one_of(st.just(own_origin.encode()), st.just(b"null"), header_values)

    @st.composite
    def build(draw: Callable[..., Any]) -> Sent:
        fault = draw(st.sampled_from(FAULTS))

        def faulty(kind: str) -> bool:
            return fault in (kind, "all")

        path = "/" + _PARAMETER.sub(lambda _: draw(route_values), target.route)
        headers: dict[str, bytes] = {"Content-Type": b"application/json"}
        principal = draw(principals(tenant)) if faulty("principal") else admin
        if principal is not None:
            headers[PRINCIPAL_HEADER] = principal
        if faulty("content_type"):
            content_type = draw(st.one_of(st.none(), content_types))
            headers.pop("Content-Type")
            if content_type is not None:
                headers["Content-Type"] = content_type
        if faulty("origin"):
            headers["Origin"] = draw(origins)
        for name in ("Idempotency-Key", "X-Forwarded-Host", "X-Forwarded-Proto"):
            if faulty("headers") and draw(st.booleans()):
                headers[name] = draw(header_values)
        params = draw(st.dictionaries(keys.filter(bool), query_values(tenant), max_size=3))
        body = draw(bodies) if target.method != "GET" or faulty("body") else b""
        return Sent(target.method, path, params, headers, body)

    return build()


# --- what every answer must look like ---------------------------------------------------------------


def check_answer(response: httpx.Response, sent: Sent) -> None:
    where = f"{sent!r} -> {response.status_code} {response.text[:500]}"
    assert response.status_code < 500, where
    request_id = response.headers.get("X-Request-Id")
    assert request_id, where
    if response.status_code < 400:
        return
    assert response.headers["content-type"].startswith("application/json"), where
    body = response.json()
    assert set(body) == {"error"}, where
    error = body["error"]
    assert [type(error.get(key)) for key in ("code", "message")] == [str, str], where
    assert error["code"], where
    assert error["message"], where
    assert error.get("requestId") == request_id, where
    texts = [error["message"], *(str(v) for field in error.get("fields", []) for v in field.values())]
    assert not any(_UNESCAPED.search(text) for text in texts), where


def fuzz(url: str, target: Target, tenant: str) -> None:
    """Send `EXAMPLES` generated requests (blocking: runs in a worker thread)."""
    with httpx.Client(base_url=url, timeout=30) as client:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(sent=requests_for(target, tenant, url))
        def send(sent: Sent) -> None:
            response = client.request(
                sent.method,
                sent.path,
                params=sent.params,
                headers={name.encode(): value for name, value in sent.headers.items()},
                content=sent.body,
            )
            check_answer(response, sent)

        send()


async def stored_rows(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """Every row in Azurite by table (tables the app creates on first use while empty are left out)."""
    return {table: rows for table, rows in (await stack.all_rows()).items() if rows}


async def assert_healthy_and_unchanged(stack: Stack, tenant: str, before: dict[str, Any]) -> None:
    assert await stored_rows(stack) == before
    assert stack.vault_names(tenant) == set()
    health = await stack.client.get("/api/health")
    assert health.status_code == 200, health.text
    assert health.headers["X-Request-Id"]


def test_every_registered_endpoint_is_fuzzed() -> None:
    routes = {str(target) for target in TARGETS}
    # The enumeration itself must work: a few routes the API is known to have.
    assert {"PUT /api/provisioning", "POST /api/tickets", "GET /api/tickets/{id}"} <= routes, routes


@pytest.mark.parametrize("target", TARGETS, ids=str)
async def test_hostile_requests_are_4xx_in_the_error_shape_and_store_nothing(
    stack: Stack, target: Target
) -> None:
    tenant = stack.new_tenant()
    before = await stored_rows(stack)
    await asyncio.to_thread(fuzz, stack.url, target, tenant)
    await assert_healthy_and_unchanged(stack, tenant, before)


# --- the review's findings, one request each ---------------------------------------------------------

DEEP = b"[" * 1000


async def test_known_hostile_requests_are_4xx_with_a_request_id(stack: Stack) -> None:
    tenant = stack.new_tenant()
    admin = stack.as_admin(tenant)
    json_type = {"Content-Type": "application/json"}
    deep_token = _token(DEEP)
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        (
            "PUT",
            "/api/provisioning/state-names",
            {"content": DEEP, "headers": {**admin, **json_type}},
            400,
            "",
        ),
        ("PUT", "/api/provisioning", {"content": DEEP, "headers": {**admin, **json_type}}, 400, ""),
        ("POST", "/api/tickets", {"content": DEEP, "headers": {**admin, **json_type}}, 400, ""),
        ("GET", "/api/tickets", {"params": {"continuationToken": deep_token}, "headers": admin}, 400, ""),
        (
            "POST",
            "/api/tickets",
            {"json": _ticket(improvementActionId="."), "headers": admin},
            400,
            "improvementActionId",
        ),
        (
            "PUT",
            "/api/provisioning",
            {"content": b"{}", "headers": {**admin, "Content-Type": "text/plain"}},
            415,
            "",
        ),
        (
            "DELETE",
            "/api/provisioning",
            {"headers": {**admin, "Origin": "https://evil.example.com"}},
            403,
            "",
        ),
    ]
    for instance in ("https://x.service-now.com:abc", ":99999", "https://x.service-now.com:-1"):
        body = {"instance": instance, "clientId": "abc", "clientSecret": "s"}
        cases.append(("PUT", "/api/provisioning", {"json": body, "headers": admin}, 400, "instance"))
    for instance in ("https://[x.service-now.com", "http://[::1"):
        body = {"instance": instance, "clientId": "abc", "clientSecret": "s"}
        cases.append(("PUT", "/api/provisioning", {"json": body, "headers": admin}, 400, "instance"))
    deep_principal = {PRINCIPAL_HEADER: base64.b64encode(DEEP).decode()}
    anonymous = {
        "health",
        "oauth_callback",
        "cors_preflight",
        "openapi_document",
        "docs_page",
        "docs_asset",
        "portal_page",
        "portal_asset",
        "portal_config",
    }
    for target in TARGETS:
        if target.function not in anonymous:
            path = "/" + _PARAMETER.sub("x", target.route)
            cases.append((target.method, path, {"headers": deep_principal}, 401, ""))

    before = await stored_rows(stack)
    for method, path, options, status, field in cases:
        response = await stack.client.request(method, path, **options)
        assert response.status_code == status, (method, path, response.text)
        error = response.json()["error"]
        assert error["requestId"] == response.headers["X-Request-Id"]
        if field:
            assert field in [f["field"] for f in error["fields"]], error
    await assert_healthy_and_unchanged(stack, tenant, before)
    assert (await api.status(stack, tenant))["status"] == "not_configured"


def _ticket(**changes: Any) -> dict[str, Any]:
    return {
        "type": "incident",
        "priority": 2,
        "dueDate": "2099-01-01",
        "recommendationSource": "microsoft",
        **changes,
    }
