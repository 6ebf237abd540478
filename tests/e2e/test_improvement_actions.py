"""GET /api/improvement-actions end to end: local host, Entra/Graph stand-in (Secure Score),
ServiceNow simulator (for the ticket made earlier), Azurite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from localdev.entra.secure_score import default_scores
from shared.graph import UnconfiguredGraph
from shared.identity import Role
from shared.services.improvement_actions import ImprovementActionsService
from tests.e2e.conftest import Stack
from tests.e2e.tickets_api import connected_tenant, create, reader, ticket_body
from tests.fakes.clock import FakeClock

pytestmark = pytest.mark.e2e

ACTIONS = 21  # in localdev/entra/improvement_actions.json
FIELDS = {"id", "title", "category", "maxScore", "currentScore", "actionUrl", "deprecated", "tickets"}


@pytest_asyncio.fixture
async def graph_control(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the Graph stand-in's control API (`/__entra/`)."""
    async with httpx.AsyncClient(
        base_url=f"{stack.entra.url}/__entra", verify=stack.tls.client_context(), timeout=5
    ) as client:
        yield client


def cached_for(stack: Stack, clock: FakeClock) -> None:
    """Serve the endpoint with the app's real adapters and a clock the test moves."""
    container = stack.container
    service = ImprovementActionsService(
        actions=container.graph, tickets=container.tickets, connections=container.connections, clock=clock
    )
    container.override(improvement_actions=service)


async def listing(stack: Stack, tenant: str, *, expect: int = 200, **params: str) -> Any:
    response = await stack.client.get(
        "/api/improvement-actions", params=params, headers=reader(stack, tenant)
    )
    assert response.status_code == expect, response.text
    body = response.json()
    return {item["id"]: item for item in body["items"]} if expect == 200 else body


async def test_actions_show_their_tickets_and_scores_and_filter(
    stack: Stack, graph_control: httpx.AsyncClient
) -> None:
    tenant = await connected_tenant(stack)
    clock = FakeClock(datetime.now(UTC))
    cached_for(stack, clock)
    # Graph pages of 4 for this tenant: the listing reads every one of 6 pages.
    await graph_control.post("/page-size", json={"pageSize": 4, "tenantId": tenant})
    body = ticket_body(
        name=None, description=None, recommendationCategory=None, improvementActionId="AdminMFAV2",
        recommendationSource="microsoft",
    )  # fmt: skip
    ticket = (await create(stack, tenant, body)).json()
    assert ticket["number"].startswith("INC")

    items = await listing(stack, tenant)

    assert len(items) == ACTIONS
    assert all(set(item) == FIELDS for item in items.values())
    mfa = items["AdminMFAV2"]
    assert mfa["tickets"] == [
        {
            "id": ticket["id"],
            "type": "incident",
            "number": ticket["number"],
            "state": "1",
            "stateName": "New",
            "url": ticket["url"],
            "status": "created",
            "deletedInServicenow": False,
        }
    ]
    assert all(item["tickets"] == [] for key, item in items.items() if key != "AdminMFAV2")
    defaults = default_scores(stack.entra.state.actions)
    assert (mfa["category"], mfa["maxScore"], mfa["currentScore"]) == (
        "Identity",
        10.0,
        defaults["AdminMFAV2"],
    )
    assert mfa["actionUrl"].startswith("https://portal.azure.com/")
    assert (items["scid_2000"]["category"], items["PWAgePolicyNew"]["currentScore"]) == ("Devices", None)
    graph_reads = (await graph_control.get("/requests", params={"tenantId": tenant})).json()["counts"]
    assert graph_reads["graph_list"] == 6
    assert graph_reads["graph_scores"] == 1

    # Secure Score moves: the cached listing shows it once the cache expires (5 minutes).
    moved = await graph_control.put(f"/secure-scores/{tenant}/controls/AdminMFAV2", json={"score": 10})
    assert moved.status_code == 200
    assert (await listing(stack, tenant))["AdminMFAV2"]["currentScore"] == defaults["AdminMFAV2"]
    clock.advance(minutes=5)
    assert (await listing(stack, tenant))["AdminMFAV2"]["currentScore"] == 10.0
    graph_reads = (await graph_control.get("/requests", params={"tenantId": tenant})).json()["counts"]
    assert (graph_reads["graph_list"], graph_reads["graph_scores"]) == (12, 2)

    identity = await listing(stack, tenant, category="Identity")
    assert {item["category"] for item in identity.values()} == {"Identity"}
    assert list(await listing(stack, tenant, hasTicket="true")) == ["AdminMFAV2"]
    assert len(await listing(stack, tenant, hasTicket="false")) == ACTIONS - 1
    assert list(await listing(stack, tenant, category="Identity", hasTicket="true")) == ["AdminMFAV2"]
    assert await listing(stack, tenant, category="Data", hasTicket="true") == {}


@pytest.mark.parametrize(
    ("params", "field"), [({"category": "Device"}, "category"), ({"hasTicket": "maybe"}, "hasTicket")]
)
async def test_a_bad_filter_is_400(stack: Stack, params: dict[str, str], field: str) -> None:
    error = (await listing(stack, stack.new_tenant(), expect=400, **params))["error"]
    assert error["code"] == "validation_error"
    assert [f["field"] for f in error["fields"]] == [field]


async def test_reading_needs_a_role_and_a_principal(stack: Stack) -> None:
    tenant = stack.new_tenant()
    no_role = await stack.client.get("/api/improvement-actions", headers=stack.as_user(tenant))
    assert (no_role.status_code, no_role.json()["error"]["code"]) == (403, "forbidden")
    nobody = await stack.client.get("/api/improvement-actions")
    assert nobody.status_code == 401
    for role in (Role.READ, Role.READ_WRITE, Role.ADMIN):
        answer = await stack.client.get("/api/improvement-actions", headers=stack.as_user(tenant, role))
        assert answer.status_code == 200, answer.text


async def test_a_tenant_without_servicenow_still_gets_its_actions(stack: Stack) -> None:
    items = await listing(stack, stack.new_tenant())
    assert len(items) == ACTIONS
    assert all(item["tickets"] == [] for item in items.values())


async def test_graph_asking_to_wait_long_is_503_with_its_retry_after(
    stack: Stack, graph_control: httpx.AsyncClient
) -> None:
    await graph_control.post("/faults", json={"status": 429, "count": 1, "retryAfter": 120})
    response = await stack.client.get("/api/improvement-actions", headers=reader(stack, stack.new_tenant()))
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert response.headers["Retry-After"] == "120"


async def test_without_graph_the_listing_is_503_dependency_not_configured(stack: Stack) -> None:
    stack.container.override(graph=UnconfiguredGraph())
    response = await stack.client.get("/api/improvement-actions", headers=reader(stack, stack.new_tenant()))
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "dependency_not_configured"
