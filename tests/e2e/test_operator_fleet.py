"""The operator's fleet view through the local host: two customer tenants connected and one
waiting for authorization, seen by a user of the operator tenant, and refused to everybody else.

Azurite's tables are shared by the session, so the listing holds other tests' tenants too: the
assertions look for this test's tenants only.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.identity import Role
from shared.settings import get_settings
from tests.e2e import api, sync_api
from tests.e2e.conftest import Stack
from tests.e2e.push_api import rotate

pytestmark = pytest.mark.e2e
ROUTE = "/api/operator/connections"


def operator_tenant(stack: Stack, app_env: pytest.MonkeyPatch) -> str:
    """A new operator tenant, configured before anything reads the settings."""
    tenant = stack.new_tenant()
    app_env.setenv("OPERATOR_TENANT_ID", tenant)
    get_settings.cache_clear()
    return tenant


def operator_of(stack: Stack, app_env: pytest.MonkeyPatch) -> dict[str, str]:
    return stack.as_user(operator_tenant(stack, app_env), Role.OPERATOR, name="Otto Operator")


async def every_page(
    stack: Stack, headers: dict[str, str], *, seen: list[str] | None = None, **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of the listing; each answer's text is added to `seen`."""
    pages: list[list[dict[str, Any]]] = []
    token: str | None = None
    while True:
        query = {**params, **({"continuationToken": token} if token else {})}
        response = await stack.client.get(ROUTE, params=query, headers=headers)
        assert response.status_code == 200, response.text
        (seen if seen is not None else []).append(response.text)
        pages.append(response.json()["items"])
        token = response.json()["continuationToken"]
        if token is None:
            return pages


async def test_the_operator_sees_every_tenant_and_no_secret(
    stack: Stack, app_env: pytest.MonkeyPatch
) -> None:
    operator = operator_of(stack, app_env)
    second = await stack.start_simulator()
    first_tenant, second_tenant, waiting = stack.new_tenant(), stack.new_tenant(), stack.new_tenant()
    for tenant, simulator in ((first_tenant, stack.simulator), (second_tenant, second)):
        assert (await api.connect(stack, tenant, simulator)).outcome == {"servicenow": "connected"}
    await api.configure(stack, waiting, second)
    await sync_api.run_worker(stack, first_tenant)
    push_key = (await rotate(stack, first_tenant))["key"]
    ours = {first_tenant, second_tenant, waiting}

    answers: list[str] = []
    pages = await every_page(stack, operator, seen=answers, top=2)
    assert all(len(page) <= 2 for page in pages)
    listed = [item["tenantId"] for page in pages for item in page]
    assert len(listed) == len(set(listed))  # no row twice across pages
    found = {item["tenantId"]: item for page in pages for item in page if item["tenantId"] in ours}
    assert set(found) == ours
    first = found[first_tenant]
    assert (first["status"], first["instanceUrl"]) == ("connected", stack.simulator.url)
    assert first["accessTokenExpiresAt"] is not None
    assert first["refreshTokenExpiresAt"] is not None
    assert (first["lastSyncOutcome"], first["lastError"]) == ("succeeded", None)
    assert first["lastSyncAt"] is not None
    assert found[second_tenant]["lastSyncOutcome"] == "never"
    assert (first["push"]["enabled"], found[second_tenant]["push"]["enabled"]) == (True, False)
    assert found[waiting]["status"] == "pending_authorization"

    connected = [
        i["tenantId"] for page in await every_page(stack, operator, status="connected") for i in page
    ]
    assert {first_tenant, second_tenant} <= set(connected)
    assert waiting not in connected
    pending = await every_page(stack, operator, status="pending_authorization", top=100)
    assert {i["status"] for page in pending for i in page} == {"pending_authorization"}

    text = "".join(answers)
    grants = [*(await stack.simulator.tokens()), *(await second.tokens())]
    secrets = {
        "client secrets": [stack.simulator.client_secret, second.client_secret],
        "refresh tokens": [g["refresh_token"] for g in grants],
        "access tokens": [t["access_token"] for g in grants for t in g["access_tokens"]],
        "push keys": [push_key],
    }
    for kind, values in secrets.items():
        assert values, kind
        assert [value for value in values if value in text] == [], kind


async def test_everybody_else_is_refused(stack: Stack, app_env: pytest.MonkeyPatch) -> None:
    operator = operator_tenant(stack, app_env)
    customer = await _connected(stack)
    refused = {
        "a connected tenant's admin": stack.as_admin(customer),
        "the role, from a customer tenant": stack.as_user(customer, Role.OPERATOR),
        "a customer with every role": stack.as_user(customer, *Role),
        "the operator tenant's admin": stack.as_user(operator, Role.ADMIN),
    }
    for who, headers in refused.items():
        response = await stack.client.get(ROUTE, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden"), who
    anonymous = await stack.client.get(ROUTE)
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "unauthenticated")


async def test_bad_filters_and_tokens_are_400(stack: Stack, app_env: pytest.MonkeyPatch) -> None:
    operator = operator_of(stack, app_env)
    await _connected(stack)
    await _connected(stack)
    first = await stack.client.get(ROUTE, params={"status": "connected", "top": 1}, headers=operator)
    token = first.json()["continuationToken"]
    assert token
    for params in (
        {"status": "broken"},
        {"top": 0},
        {"continuationToken": "not-a-token"},
        {"continuationToken": token},  # issued for status=connected
        {"continuationToken": token, "status": "pending_authorization"},
    ):
        response = await stack.client.get(ROUTE, params=params, headers=operator)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "validation_error"), params


async def test_the_fleet_view_is_off_without_an_operator_tenant(
    stack: Stack, app_env: pytest.MonkeyPatch
) -> None:
    app_env.delenv("OPERATOR_TENANT_ID", raising=False)
    get_settings.cache_clear()
    tenant = stack.new_tenant()
    response = await stack.client.get(ROUTE, headers=stack.as_user(tenant, Role.OPERATOR))
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")


async def _connected(stack: Stack) -> str:
    tenant = stack.new_tenant()
    assert (await api.connect(stack, tenant, stack.simulator)).outcome == {"servicenow": "connected"}
    return tenant
