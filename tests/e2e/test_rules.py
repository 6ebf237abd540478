"""Rules end to end: the rules API through the local host, and the daily evaluation run by the sync
worker's Secure Score check (as the container wires it), against the ServiceNow simulator, the
Graph stand-in and Azurite. The daily check is made due as in `test_secure_score_loop.py`; "the
next day" is the rules' clock moved a day on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from shared.identity import Role
from shared.services.rules import RuleService
from shared.stores.rules import RuleRepository
from tests.e2e import sync_api
from tests.e2e.conftest import Stack
from tests.e2e.test_secure_score_loop import daily_check, put
from tests.e2e.tickets_api import connected_tenant, get, records

pytestmark = pytest.mark.e2e

TICKET = {"type": "incident", "priority": 2, "dueInDays": 14}


class ShiftedClock:
    """The system clock, `offset` ahead."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest_asyncio.fixture
async def graph(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"{stack.entra.url}/__entra", verify=stack.tls.client_context(), timeout=5
    ) as client:
        yield client


@pytest.fixture
def clock(stack: Stack) -> ShiftedClock:
    """The rules' clock (set before anything builds the Secure Score check that calls them)."""
    shifted = ShiftedClock()
    container = stack.container
    container.override(rules=RuleService.wired(RuleRepository(container.tables), container, shifted))
    return shifted


def admin(stack: Stack, tenant: str) -> dict[str, str]:
    return stack.as_user(tenant, Role.ADMIN, name="Ada Admin")


async def put_rule(stack: Stack, tenant: str, rule_id: str, **body: Any) -> dict[str, Any]:
    rule = {"name": rule_id.title(), "ticket": TICKET, **body}
    response = await stack.client.put(f"/api/rules/{rule_id}", json=rule, headers=admin(stack, tenant))
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def rule(stack: Stack, tenant: str, rule_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/rules/{rule_id}", headers=admin(stack, tenant))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def rule_tickets(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    page = await get(stack, tenant, top=100)
    return [t for t in page["items"] if t["createdBy"].startswith("Rule: ")]


async def scores(graph: httpx.AsyncClient, tenant: str, **points: float) -> None:
    for control, score in points.items():
        await put(graph, f"/secure-scores/{tenant}/controls/{control}", {"score": score})


async def test_a_rule_creates_two_tickets_once_and_preview_creates_nothing(
    stack: Stack, graph: httpx.AsyncClient, clock: ShiftedClock
) -> None:
    tenant = await connected_tenant(stack)
    await scores(graph, tenant, AdminMFAV2=0, DLPEnabled=0)
    saved = await put_rule(stack, tenant, "two", match={"includeActionIds": ["AdminMFAV2", "DLPEnabled"]})
    assert saved["lastRun"] is None

    preview = await stack.client.post(
        "/api/rules/preview", json={"ruleId": "two"}, headers=admin(stack, tenant)
    )
    assert preview.status_code == 200, preview.text
    assert [a["actionId"] for a in preview.json()["wouldCreate"]] == ["AdminMFAV2", "DLPEnabled"]
    assert await records(stack.simulator, "incident") == []  # the preview created nothing
    assert await rule_tickets(stack, tenant) == []

    await daily_check(stack, tenant)
    made = await rule_tickets(stack, tenant)
    assert sorted(t["improvementActionId"] for t in made) == ["AdminMFAV2", "DLPEnabled"]
    assert {t["createdBy"] for t in made} == {"Rule: Two"}
    timeline = await stack.client.get(f"/api/tickets/{made[0]['id']}/events", headers=admin(stack, tenant))
    assert timeline.status_code == 200, timeline.text
    created = timeline.json()["events"][0]
    assert (created["type"], created["createdByName"]) == ("created", "Rule: Two")
    run = (await rule(stack, tenant, "two"))["lastRun"]
    assert (run["outcome"], len(run["created"])) == ("completed", 2)
    counts = (await graph.get("/requests", params={"tenantId": tenant})).json()["counts"]
    assert "graph_get" not in counts  # no read of a single action: the check's read served the creates

    await daily_check(stack, tenant)  # the same day
    clock.offset = timedelta(days=1)
    await daily_check(stack, tenant)  # the next day
    assert len(await rule_tickets(stack, tenant)) == 2
    assert len(await records(stack.simulator, "incident")) == 2
    run = (await rule(stack, tenant, "two"))["lastRun"]
    assert run["created"] == []
    assert [s["reason"].startswith("open ticket") for s in run["skipped"]] == [True, True]


async def test_closing_a_ticket_whose_action_regressed_lets_the_rule_create_a_new_one(
    stack: Stack, graph: httpx.AsyncClient, clock: ShiftedClock
) -> None:
    tenant = await connected_tenant(stack)
    await scores(graph, tenant, AdminMFAV2=0)
    await put_rule(stack, tenant, "mfa", match={"includeActionIds": ["AdminMFAV2"]})
    await daily_check(stack, tenant)
    [first] = await rule_tickets(stack, tenant)

    await scores(graph, tenant, AdminMFAV2=10)
    await sync_api.update_record(stack.simulator, "incident", first["sysId"], state="7")
    await daily_check(stack, tenant)  # done and closed: nothing to create
    assert len(await rule_tickets(stack, tenant)) == 1

    await scores(graph, tenant, AdminMFAV2=4)
    await daily_check(stack, tenant)
    assert (await sync_api.ticket_row(stack, tenant, first["id"]))["Regressed"] is True
    tickets = await rule_tickets(stack, tenant)
    assert len(tickets) == 2
    assert {t["improvementActionId"] for t in tickets} == {"AdminMFAV2"}


async def test_the_cap_holds_and_a_doubled_evaluation_creates_each_ticket_once(
    stack: Stack, graph: httpx.AsyncClient, clock: ShiftedClock
) -> None:
    tenant = await connected_tenant(stack)
    await scores(graph, tenant, AdminMFAV2=0, MFARegistrationV2=0, BlockLegacyAuthentication=0)
    await put_rule(stack, tenant, "capped", match={"categories": ["Identity"]}, maxPerRun=2)
    await daily_check(stack, tenant)
    assert len(await rule_tickets(stack, tenant)) == 2
    run = (await rule(stack, tenant, "capped"))["lastRun"]
    assert run["outcome"] == "capped"
    assert run["overCap"] >= 1

    await put_rule(stack, tenant, "capped", match={"categories": ["Identity"]})  # no cap to speak of
    container = stack.container
    connection = await container.connections.get(tenant)
    assert connection is not None
    read = await asyncio.gather(
        container.graph.control_scores(tenant), container.graph.list_improvement_actions(tenant)
    )
    evaluation = container.rules.evaluation
    await asyncio.gather(*(evaluation.after_read(connection, *read) for _ in range(3)))
    tickets = await rule_tickets(stack, tenant)
    by_action = [t["improvementActionId"] for t in tickets]
    assert len(by_action) == len(set(by_action)) > 2
    assert len(await records(stack.simulator, "incident")) == len(tickets)


async def test_bad_rules_are_400_and_unknown_ones_404(stack: Stack) -> None:
    tenant = stack.new_tenant()
    headers = admin(stack, tenant)
    bad_id = await stack.client.put(
        "/api/rules/Not_A_Slug", json={"name": "x", "ticket": TICKET}, headers=headers
    )
    assert bad_id.status_code == 400, bad_id.text
    assert bad_id.json()["error"]["code"] == "validation_error"
    bad_body = await stack.client.put(
        "/api/rules/ok", json={"name": "x", "ticket": {**TICKET, "priority": 9}}, headers=headers
    )
    assert bad_body.status_code == 400
    assert bad_body.json()["error"]["fields"][0]["field"] == "ticket.priority"
    assert (await stack.client.get("/api/rules/none", headers=headers)).status_code == 404
    assert (await stack.client.delete("/api/rules/none", headers=headers)).status_code == 404
    reader = stack.as_user(tenant, Role.READ_WRITE)
    assert (await stack.client.get("/api/rules", headers=reader)).status_code == 403
    listed = await stack.client.get("/api/rules", headers=headers)
    assert listed.json() == {"items": [], "pausedUntil": None}
