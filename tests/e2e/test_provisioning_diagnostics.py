"""Test connection (`POST /api/provisioning/diagnostics`), end to end against the simulator."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from shared.services.diagnostics import FIX_CLIENT_SECRET, FIX_REVOKED, TITLES
from tests.e2e import api
from tests.e2e.conftest import Simulator, Stack

pytestmark = pytest.mark.e2e

TABLES = ("incident", "change_request", "sys_choice")


async def _diagnose(stack: Stack, tenant: str, *, expect: int = 200) -> dict[str, Any]:
    response = await stack.client.post("/api/provisioning/diagnostics", headers=stack.as_admin(tenant))
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


def _checks(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert [check["id"] for check in body["checks"]] == list(TITLES)
    return {check["id"]: check for check in body["checks"]}


def _statuses(body: dict[str, Any]) -> dict[str, str]:
    return {name: check["status"] for name, check in _checks(body).items()}


def _record_counts(simulator: Simulator) -> dict[str, int]:
    return {table: len(list(simulator.state.records.rows(table))) for table in TABLES}


async def _connected(stack: Stack) -> str:
    tenant = stack.new_tenant()
    assert (await api.connect(stack, tenant, stack.simulator)).outcome == {"servicenow": "connected"}
    await stack.simulator.control("POST", "tables/incident/seed", {"count": 2, "template": {}})
    return tenant


async def test_a_healthy_connection_passes_every_check_and_creates_nothing(stack: Stack) -> None:
    tenant = await _connected(stack)
    before = _record_counts(stack.simulator)
    await stack.simulator.control("POST", "stats/reset")
    grants_before = len(await stack.simulator.tokens())

    body = await _diagnose(stack, tenant)
    assert set(_statuses(body).values()) == {"passed"}, body
    checks = _checks(body)
    assert "no records yet" in checks["read_change_requests"]["detail"]
    assert "no records yet" not in checks["read_incidents"]["detail"]
    assert body["checkedAt"]

    assert _record_counts(stack.simulator) == before
    requests = await stack.simulator.stats()
    assert {key.split()[0] for key in requests} <= {"GET", "POST"}
    assert [key for key in requests if key.startswith("POST")] == ["POST /oauth_token.do"]  # the refresh
    assert len(await stack.simulator.tokens()) == grants_before
    assert (await api.status(stack, tenant))["status"] == "connected"


async def test_a_client_secret_changed_in_servicenow_fails_the_oauth_check(stack: Stack) -> None:
    tenant = await _connected(stack)
    # The admin rotated the secret in ServiceNow's Application Registry; ours is the old one.
    stack.simulator.state.oauth.clients[stack.simulator.client_id] = "rotated-secret"

    checks = _checks(await _diagnose(stack, tenant))
    assert checks["oauth_application"]["status"] == "failed"
    assert checks["oauth_application"]["fix"] == FIX_CLIENT_SECRET
    assert checks["instance_reachable"]["status"] == checks["clock_skew"]["status"] == "passed"
    assert {checks[name]["status"] for name in list(TITLES)[2:5]} == {"skipped"}
    assert checks["refresh_token_lifetime"]["status"] == "skipped"
    assert (await api.status(stack, tenant))["status"] == "reauthorization_required"


async def test_a_revoked_grant_fails_the_oauth_check_and_requires_reauthorization(stack: Stack) -> None:
    tenant = await _connected(stack)
    await stack.simulator.control("POST", "tokens/revoke", {})

    checks = _checks(await _diagnose(stack, tenant))
    assert checks["oauth_application"]["status"] == "failed"
    assert checks["oauth_application"]["fix"] == FIX_REVOKED
    status = await api.status(stack, tenant)
    assert status["status"] == "reauthorization_required"
    assert status["lastError"]
    # Now the tenant must re-authorize first, as for every other ServiceNow operation.
    refused = await _diagnose(stack, tenant, expect=409)
    assert refused["error"]["code"] == "reauthorization_required"


async def test_a_403_on_a_table_fails_that_read_with_the_role_fix(stack: Stack) -> None:
    tenant = await _connected(stack)
    fault = {"kind": "403", "method": "GET", "path_prefix": "/api/now/table/change_request", "count": 5}
    await stack.simulator.control("POST", "faults", fault)

    body = await _diagnose(stack, tenant)
    expected = dict.fromkeys(TITLES, "passed") | {"read_change_requests": "failed"}
    assert _statuses(body) == expected
    failed = _checks(body)["read_change_requests"]
    assert "HTTP 403" in failed["detail"]
    assert "lacks the role or ACL to read change requests" in failed["fix"]


async def test_an_unreachable_instance_fails_the_first_check_and_skips_the_rest(stack: Stack) -> None:
    tenant = await _connected(stack)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    await stack.merge_row(
        "connections",
        {"PartitionKey": tenant, "RowKey": "servicenow", "InstanceUrl": f"http://127.0.0.1:{port}"},
    )

    body = await _diagnose(stack, tenant)
    assert _statuses(body) == dict.fromkeys(TITLES, "skipped") | {"instance_reachable": "failed"}
    assert _checks(body)["instance_reachable"]["fix"]
    assert (await api.status(stack, tenant))["status"] == "connected"


async def test_a_tenant_that_never_connected_gets_409(stack: Stack) -> None:
    body = await _diagnose(stack, stack.new_tenant(), expect=409)
    assert body["error"]["code"] == "connection_not_ready"


async def test_only_an_admin_may_test_the_connection(stack: Stack) -> None:
    tenant = stack.new_tenant()
    response = await stack.client.post(
        "/api/provisioning/diagnostics", headers=stack.as_user(tenant, "Tickets.ReadWrite")
    )
    assert response.status_code == 403
