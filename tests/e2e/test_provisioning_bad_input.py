"""Bad input to every provisioning endpoint: a 4xx with the error body, and nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e import api
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

GOOD = {"instance": "contoso", "clientId": "abc", "clientSecret": "s3cret-value-for-tests"}


async def assert_nothing_stored(stack: Stack, tenant: str) -> None:
    assert await stack.rows("connections", tenant) == []
    assert [row for row in await stack.rows("oauthstates") if row.get("TenantId") == tenant] == []
    assert stack.vault_names(tenant) == set()
    assert (await api.status(stack, tenant))["status"] == "not_configured"


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


CONFIGURE_BODIES: list[Any] = [
    pytest.param({**GOOD, "instance": 123}, id="instance-not-a-string"),
    pytest.param({**GOOD, "clientId": ["abc"]}, id="client-id-a-list"),
    pytest.param({**GOOD, "clientSecret": 42}, id="secret-a-number"),
    pytest.param({"clientId": "abc", "clientSecret": "s"}, id="instance-missing"),
    pytest.param({"instance": "contoso", "clientSecret": "s"}, id="client-id-missing"),
    pytest.param({"instance": "contoso", "clientId": "abc"}, id="secret-missing-the-first-time"),
    pytest.param({**GOOD, "instance": "a" * 254}, id="instance-oversize"),
    pytest.param({**GOOD, "clientId": "a" * 129}, id="client-id-oversize"),
    pytest.param({**GOOD, "clientSecret": "s" * 513}, id="secret-oversize"),
    pytest.param({**GOOD, "clientSecret": ""}, id="secret-empty"),
    pytest.param({**GOOD, "instance": ""}, id="instance-empty"),
    pytest.param({**GOOD, "instance": "   "}, id="instance-blank"),
    pytest.param({**GOOD, "clientId": "has space"}, id="client-id-bad-characters"),
    pytest.param({**GOOD, "tenantId": "someone-else"}, id="unknown-field"),
    pytest.param({**GOOD, "instance": "contoso.example.com"}, id="instance-other-domain"),
    pytest.param({**GOOD, "instance": "https://contoso.service-now.com/login.do"}, id="instance-with-path"),
    pytest.param({**GOOD, "instance": "ftp://contoso.service-now.com"}, id="instance-other-scheme"),
    pytest.param({**GOOD, "instance": "con_toso!"}, id="instance-bad-characters"),
    pytest.param([GOOD], id="array"),
    pytest.param("contoso", id="string"),
    pytest.param(None, id="null"),
]


@pytest.mark.parametrize("body", CONFIGURE_BODIES)
async def test_configure_refuses_bad_bodies(stack: Stack, body: Any) -> None:
    tenant = stack.new_tenant()
    response = await stack.client.put(
        "/api/provisioning", content=json.dumps(body), headers=stack.as_admin(tenant)
    )
    assert_error(response, 400, "validation_error")
    assert "s3cret-value-for-tests" not in response.text
    await assert_nothing_stored(stack, tenant)


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        pytest.param(b"", 400, "validation_error", id="empty"),
        pytest.param(b"   ", 400, "validation_error", id="blank"),
        pytest.param(b'{"instance": "contoso",', 400, "validation_error", id="truncated-json"),
        pytest.param(b"\xff\xfe{}", 400, "validation_error", id="not-utf8"),
        pytest.param(b"instance=contoso&clientId=abc", 400, "validation_error", id="form-encoded"),
        pytest.param(b'{"instance": "' + b"a" * 70_000 + b'"}', 413, "payload_too_large", id="over-64k"),
    ],
)
@pytest.mark.parametrize("path", ["/api/provisioning", "/api/provisioning/state-names"])
async def test_unreadable_bodies_are_refused(
    stack: Stack, path: str, raw: bytes, status: int, code: str
) -> None:
    tenant = stack.new_tenant()
    response = await stack.client.put(path, content=raw, headers=stack.as_admin(tenant))
    assert_error(response, status, code)
    await assert_nothing_stored(stack, tenant)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"incident": {"6": 1}}, id="name-not-a-string"),
        pytest.param({"incident": {"6": "x" * 65}}, id="name-oversize"),
        pytest.param({"incident": {"6": " "}}, id="name-blank"),
        pytest.param({"incident": {"42": "Nope"}}, id="unknown-state-code"),
        pytest.param({"problem": {"1": "New"}}, id="unknown-table"),
        pytest.param({"incident": "Fixed"}, id="table-not-an-object"),
        pytest.param(["incident"], id="array"),
    ],
)
async def test_state_names_refuses_bad_bodies_of_a_configured_tenant(stack: Stack, body: Any) -> None:
    tenant = stack.new_tenant()
    await api.configure(stack, tenant, stack.simulator)
    [before] = await stack.rows("connections", tenant)
    response = await stack.client.put(
        "/api/provisioning/state-names", content=json.dumps(body), headers=stack.as_admin(tenant)
    )
    assert_error(response, 400, "validation_error")
    [after] = await stack.rows("connections", tenant)
    assert after == before


async def test_authorize_and_state_names_before_configure_are_409_and_store_nothing(stack: Stack) -> None:
    tenant = stack.new_tenant()
    authorize = await stack.client.post("/api/provisioning/authorize", headers=stack.as_admin(tenant))
    assert_error(authorize, 409, "connection_not_ready")
    names = await stack.client.put(
        "/api/provisioning/state-names", json={"incident": {"6": "Fixed"}}, headers=stack.as_admin(tenant)
    )
    assert_error(names, 409, "connection_not_ready")
    await assert_nothing_stored(stack, tenant)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/api/provisioning"),
        ("POST", "/api/provisioning"),
        ("GET", "/api/provisioning/authorize"),
        ("PUT", "/api/provisioning/authorize"),
        ("GET", "/api/provisioning/state-names"),
        ("DELETE", "/api/provisioning/state-names"),
        ("POST", "/api/oauth/callback"),
    ],
)
async def test_wrong_methods_are_405(stack: Stack, method: str, path: str) -> None:
    tenant = stack.new_tenant()
    response = await stack.client.request(method, path, json=GOOD, headers=stack.as_admin(tenant))
    assert_error(response, 405, "method_not_allowed")
    await assert_nothing_stored(stack, tenant)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/provisioning", None),
        ("PUT", "/api/provisioning", GOOD),
        ("POST", "/api/provisioning/authorize", None),
        ("PUT", "/api/provisioning/state-names", {"incident": {"6": "Fixed"}}),
        ("DELETE", "/api/provisioning", None),
    ],
)
async def test_callers_without_a_principal_or_the_role_are_refused(
    stack: Stack, method: str, path: str, body: Any
) -> None:
    tenant = stack.new_tenant()
    anonymous = await stack.client.request(method, path, json=body)
    assert_error(anonymous, 401, "unauthenticated")
    if method != "GET":
        reader = await stack.client.request(
            method, path, json=body, headers=stack.as_user(tenant, "Tickets.ReadWrite")
        )
        assert_error(reader, 403, "forbidden")
    no_role = await stack.client.request(method, path, json=body, headers=stack.as_user(tenant))
    assert_error(no_role, 403, "forbidden")
    await assert_nothing_stored(stack, tenant)


async def test_a_plain_url_instance_is_accepted_only_on_a_developer_machine(stack: Stack) -> None:
    """SSRF: outside LOCAL_DEV only *.service-now.com is accepted, so `instance` cannot aim us anywhere."""
    tenant = stack.new_tenant()
    stack.override_provisioning(local_dev=False)
    for instance in (
        stack.simulator.url,
        "https://evil.example.com",
        "https://contoso.service-now.com.evil.com",
    ):
        refused = await api.configure(stack, tenant, stack.simulator, instance=instance, expect=400)
        assert_error(refused, 400, "validation_error")
        assert refused.json()["error"]["fields"][0]["field"] == "instance"
    await assert_nothing_stored(stack, tenant)
    assert await stack.simulator.stats() == {}

    accepted = await api.configure(
        stack, tenant, stack.simulator, instance="https://Contoso.service-now.com/"
    )
    assert accepted.json()["authorizeUrl"].startswith("https://contoso.service-now.com/oauth_auth.do?")
    assert (await api.status(stack, tenant))["instance"] == "contoso"

    stack.override_provisioning(local_dev=True)
    local = await api.configure(stack, tenant, stack.simulator, instance="https://evil.example.com")
    assert local.json()["authorizeUrl"].startswith("https://evil.example.com/oauth_auth.do?")
