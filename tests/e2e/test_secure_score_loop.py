"""The Secure Score loop end to end: the local host's sync worker (as the container wires it), the
ServiceNow simulator, the Entra/Graph stand-in and Azurite. The daily check is made due by moving
the connection's `LastReconciledAt` back a day, and time past the grace period by moving stored
instants back: nothing waits for a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from shared.identity import Role
from shared.services.remediation_write_back import SCID_REFUSED
from tests.e2e import sync_api
from tests.e2e.conftest import Stack
from tests.e2e.tickets_api import connected_tenant, create, ticket_body

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def graph(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the Graph stand-in's control API (`/__entra/`)."""
    async with httpx.AsyncClient(
        base_url=f"{stack.entra.url}/__entra", verify=stack.tls.client_context(), timeout=5
    ) as client:
        yield client


async def action_ticket(stack: Stack, tenant: str, action_id: str) -> dict[str, Any]:
    body = ticket_body(
        name=None, description=None, recommendationCategory=None, improvementActionId=action_id,
        recommendationSource="microsoft",
    )  # fmt: skip
    return dict((await create(stack, tenant, body)).json())


async def put(graph: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    response = await graph.put(path, json=body)
    assert response.status_code == 200, response.text


async def daily_check(stack: Stack, tenant: str) -> None:
    """Make the daily reconciliation (and so the check) due, and run the sync worker."""
    await move(stack, "connections", tenant, "servicenow", LastReconciledAt=timedelta(days=2))
    assert await sync_api.run_worker(stack, tenant) == "succeeded"


async def move(stack: Stack, table: str, tenant: str, row: str, **back: timedelta) -> None:
    """Set instants of a stored row to that long before now."""
    now = datetime.now(UTC)
    await stack.merge_row(
        table, {"PartitionKey": tenant, "RowKey": row, **{name: now - ago for name, ago in back.items()}}
    )


async def row(stack: Stack, tenant: str, ticket_id: str) -> dict[str, Any]:
    return await sync_api.ticket_row(stack, tenant, ticket_id)


def status_and_flags(ticket: dict[str, Any]) -> tuple[Any, ...]:
    return (
        ticket.get("RemediationStatus"),
        ticket.get("ClosedWithoutRemediation"),
        ticket.get("RemediatedWhileOpen"),
        ticket.get("Regressed"),
    )


async def patches(graph: httpx.AsyncClient, tenant: str) -> list[dict[str, Any]]:
    return list((await graph.get("/patches", params={"tenantId": tenant})).json()["patches"])


async def graph_requests(graph: httpx.AsyncClient, tenant: str) -> int:
    return int((await graph.get("/requests", params={"tenantId": tenant})).json()["total"])


async def test_a_ticket_closed_without_the_fix_is_flagged_until_secure_score_shows_it_done(
    stack: Stack, graph: httpx.AsyncClient
) -> None:
    tenant = await connected_tenant(stack)
    await put(graph, f"/secure-scores/{tenant}/controls/AdminMFAV2", {"score": 0})
    ticket = await action_ticket(stack, tenant, "AdminMFAV2")
    assert await sync_api.run_worker(stack, tenant) == "succeeded"  # the first sync reconciles: checked
    first = await row(stack, tenant, ticket["id"])
    assert status_and_flags(first) == ("in_progress", False, False, False)
    assert (first["RemediationScore"], first["RemediationMaxScore"]) == (0.0, 10.0)

    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="6")  # resolved
    await daily_check(stack, tenant)
    resolved = await row(stack, tenant, ticket["id"])
    assert resolved["State"] == "6"
    assert resolved["ClosedAt"] == resolved["StateUpdatedAt"]
    assert status_and_flags(resolved) == ("in_progress", False, False, False)  # inside the grace

    await move(stack, "tickets", tenant, ticket["id"], ClosedAt=timedelta(days=8))
    await daily_check(stack, tenant)
    assert status_and_flags(await row(stack, tenant, ticket["id"])) == ("in_progress", True, False, False)

    await put(graph, f"/secure-scores/{tenant}/controls/AdminMFAV2", {"score": 10})
    await daily_check(stack, tenant)
    done = await row(stack, tenant, ticket["id"])
    assert status_and_flags(done) == ("completed", False, False, False)
    assert done["RemediationCompletedAt"] == done["RemediationCheckedAt"]

    await put(graph, f"/control-states/{tenant}/AdminMFAV2", {"state": "ThirdParty", "comment": "Our MSSP"})
    await daily_check(stack, tenant)
    assert status_and_flags(await row(stack, tenant, ticket["id"])) == (
        "resolved_by_exception",
        False,
        False,
        False,
    )

    await put(graph, f"/secure-scores/{tenant}/controls/AdminMFAV2", {"score": 4})
    await daily_check(stack, tenant)
    dropped = await row(stack, tenant, ticket["id"])
    assert status_and_flags(dropped) == ("in_progress", True, False, True)  # regressed, and closed
    assert dropped["RemediationCompletedAt"] == done["RemediationCompletedAt"]
    assert await patches(graph, tenant) == []  # the write-back is off unless turned on
    connection = await sync_api.connection_row(stack, tenant)
    assert connection["RemediationCheckedAt"] == dropped["RemediationCheckedAt"]


async def test_write_back_sends_each_comment_once_keeps_the_state_and_waits_out_a_429(
    stack: Stack, graph: httpx.AsyncClient
) -> None:
    tenant = await connected_tenant(stack)
    await stack.merge_row(
        "connections", {"PartitionKey": tenant, "RowKey": "servicenow", "SecureScoreWriteBack": True}
    )
    await put(
        graph, f"/control-states/{tenant}/mdo_safeattachments", {"state": "Reviewed", "comment": "Gateway"}
    )
    ticket = await action_ticket(stack, tenant, "mdo_safeattachments")
    device = await action_ticket(stack, tenant, "scid_2000")
    assert await sync_api.run_worker(stack, tenant) == "succeeded"  # first sync: the check writes back

    [sent] = await patches(graph, tenant)
    assert sent["controlId"] == "mdo_safeattachments"
    assert sent["body"]["state"] == "Reviewed"  # the control's own state, untouched
    assert sent["body"]["comment"].startswith(f"ServiceNow {ticket['number']} (New): ")
    assert sent["body"]["comment"].endswith(ticket["url"])
    assert (await row(stack, tenant, ticket["id"]))["WriteBackComment"] == sent["body"]["comment"]
    assert (await row(stack, tenant, device["id"]))["WriteBackError"] == SCID_REFUSED

    await daily_check(stack, tenant)  # nothing new to say: nothing sent
    assert len(await patches(graph, tenant)) == 1

    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="2")
    assert await sync_api.run_worker(stack, tenant) == "succeeded"  # a normal run writes back its change
    assert [p["body"]["comment"].split(" ")[2] for p in await patches(graph, tenant)] == ["(New):", "(In"]

    # Graph throttles the next write-back: the tenant's Graph work pauses, ServiceNow's sync does not.
    fault = {"status": 429, "count": 1, "retryAfter": 120, "kind": "graph_patch", "tenantId": tenant}
    assert (await graph.post("/faults", json=fault)).status_code < 300
    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="6")
    assert await sync_api.run_worker(stack, tenant) == "succeeded"
    paused = await row(stack, tenant, ticket["id"])
    assert paused["State"] == "6"
    assert "429" in paused["WriteBackError"]
    connection = await sync_api.connection_row(stack, tenant)
    assert connection["GraphNotBefore"] > datetime.now(UTC) + timedelta(seconds=100)

    before = await graph_requests(graph, tenant)
    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="7")
    assert await sync_api.run_worker(stack, tenant) == "succeeded"
    assert (await row(stack, tenant, ticket["id"]))["State"] == "7"  # synced
    assert await graph_requests(graph, tenant) == before  # Graph left alone

    await move(
        stack, "connections", tenant, "servicenow", GraphNotBefore=timedelta(seconds=1)
    )  # Retry-After over
    await daily_check(stack, tenant)
    sent_all = await patches(graph, tenant)
    assert [p["body"]["comment"].split(" ")[2] for p in sent_all] == ["(New):", "(In", "(Closed):"]
    assert {p["body"]["state"] for p in sent_all} == {"Reviewed"}
    assert {p["status"] for p in sent_all} == {204}
    resumed = await row(stack, tenant, ticket["id"])
    assert resumed.get("WriteBackError") is None
    assert resumed["WriteBackComment"] == sent_all[-1]["body"]["comment"]


async def test_a_ticket_made_with_write_back_on_is_written_back_by_its_create(
    stack: Stack, graph: httpx.AsyncClient
) -> None:
    tenant = await connected_tenant(stack)
    admin = stack.as_user(tenant, Role.ADMIN, name="Ada Admin")
    switched = await stack.client.put(
        "/api/provisioning/secure-score", json={"writeBack": True}, headers=admin
    )
    assert switched.status_code == 200, switched.text
    ticket = await action_ticket(stack, tenant, "AdminMFAV2")

    [sent] = await patches(graph, tenant)  # before any sync ran
    assert sent["controlId"] == "AdminMFAV2"
    assert sent["body"]["comment"] == f"ServiceNow {ticket['number']} (New): {ticket['url']}"
    assert (await row(stack, tenant, ticket["id"]))["WriteBackComment"] == sent["body"]["comment"]
    assert await sync_api.run_worker(stack, tenant) == "succeeded"  # the check finds it there
    assert len(await patches(graph, tenant)) == 1


async def test_an_open_ticket_whose_action_is_done_gets_one_work_note(
    stack: Stack, graph: httpx.AsyncClient
) -> None:
    tenant = await connected_tenant(stack)
    admin = stack.as_user(tenant, Role.ADMIN, name="Ada Admin")
    switched = await stack.client.put(
        "/api/provisioning/secure-score", json={"workNotes": True}, headers=admin
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["secureScore"]["workNotes"] is True
    assert switched.json()["secureScore"]["writeBack"] is False  # left as it was
    await put(graph, f"/secure-scores/{tenant}/controls/AdminMFAV2", {"score": 10})
    ticket = await action_ticket(stack, tenant, "AdminMFAV2")
    assert await sync_api.run_worker(stack, tenant) == "succeeded"  # the first sync reconciles: checked

    [note] = await work_notes(stack, ticket["sysId"])
    assert "improvement action AdminMFAV2" in note["value"]
    assert note["value"].endswith(f"[secure-score:AdminMFAV2:{ticket['id']}]")
    noted = await row(stack, tenant, ticket["id"])
    assert (noted["RemediatedWhileOpen"], noted["WorkNoteState"]) == (True, "sent")

    await daily_check(stack, tenant)
    assert len(await work_notes(stack, ticket["sysId"])) == 1
    assert await patches(graph, tenant) == []  # the write-back stays off


async def work_notes(stack: Stack, sys_id: str) -> list[dict[str, Any]]:
    """The record's work notes, as the simulator holds them in `sys_journal_field`."""
    entries = (await stack.simulator.control("GET", "records/sys_journal_field"))["result"]
    return [e for e in entries if (e["element_id"], e["element"]) == (sys_id, "work_notes")]
