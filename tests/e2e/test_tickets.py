"""Tickets end to end: local host, ServiceNow simulator, Entra/Graph and Key Vault stand-ins, Azurite."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.models import CreateTicket
from shared.records import IdempotencyRecord, new_ticket_id
from shared.services.idempotency_claims import idempotency_key_hash, request_fingerprint
from shared.services.ticket_policy import TicketingPolicy
from tests.e2e import api
from tests.e2e.conftest import Stack
from tests.e2e.tickets_api import (
    WRITER,
    connected_tenant,
    create,
    fast_servicenow,
    fault,
    get,
    records,
    settled,
    ticket_body,
    tomorrow,
    writer,
)

pytestmark = pytest.mark.e2e

# DESIGN.md section 4's ticket, plus deletedInServiceNowAt (set when the sync finds the record gone),
# status (`creating`, `created`, `failed`), failureReason and remediation (the Secure Score check).
TICKET_FIELDS = {
    "id", "type", "number", "sysId", "url", "state", "stateName", "name", "description", "priority",
    "dueDate", "recommendationSource", "recommendationCategory", "improvementActionId", "createdBy",
    "createdAt", "stateUpdatedAt", "deletedInServiceNowAt", "status", "failureReason", "remediation",
}  # fmt: skip


def _block(record: dict[str, Any]) -> list[str]:
    return str(record["description"]).split("-- Microsoft 365 Security Connector --\n", 1)[1].splitlines()


async def test_an_incident_carries_every_field_to_servicenow(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    due = tomorrow()
    response = await create(stack, tenant, ticket_body(priority=2, dueDate=due.isoformat()))
    ticket = response.json()
    assert set(ticket) == TICKET_FIELDS
    assert response.headers["Location"] == f"/api/tickets/{ticket['id']}"

    [record] = await records(stack.simulator, "incident")
    assert record["short_description"] == "Turn on MFA for admins"
    assert record["description"].startswith("Admins sign in with a password only.\n\n")
    assert _block(record) == [
        "Task: Turn on MFA for admins",
        "Recommendation source: User",
        "Recommendation category: Identity",
        f"Requested by: {WRITER} ({stack.user_id(tenant, WRITER)})",
        f"Connector ticket id: {ticket['id']}",
    ]
    assert (record["impact"], record["urgency"], record["priority"]) == ("1", "2", "2")
    assert record["due_date"] == f"{due.isoformat()} 23:59:59"
    assert record["correlation_id"] == ticket["id"]
    assert record["correlation_display"] == "Microsoft 365 Security Connector"

    assert ticket["number"] == record["number"]
    assert ticket["number"].startswith("INC")
    assert ticket["sysId"] == record["sys_id"]
    assert ticket["url"] == (f"{stack.simulator.url}/nav_to.do?uri=incident.do%3Fsys_id%3D{record['sys_id']}")
    assert (ticket["state"], ticket["stateName"]) == ("1", "New")
    assert ticket["type"] == "incident"
    assert (ticket["name"], ticket["description"]) == (
        "Turn on MFA for admins",
        "Admins sign in with a password only.",
    )
    assert (ticket["priority"], ticket["dueDate"]) == (2, due.isoformat())
    assert (ticket["recommendationSource"], ticket["recommendationCategory"]) == ("user", "Identity")
    assert ticket["improvementActionId"] is None
    assert ticket["createdBy"] == WRITER
    assert (ticket["status"], ticket["failureReason"]) == ("created", None)
    assert await get(stack, tenant, f"/{ticket['id']}") == ticket


@pytest.mark.parametrize("priority", [1, 3, 4, 5])
async def test_a_change_request_is_named_for_microsoft_365_and_priority_round_trips(
    stack: Stack, priority: int
) -> None:
    tenant = await connected_tenant(stack)
    body = ticket_body(type="change_request", priority=priority, recommendationSource="microsoft")
    ticket = (await create(stack, tenant, body)).json()
    [record] = await records(stack.simulator, "change_request")
    assert record["short_description"] == (
        "Microsoft 365 Security and Configuration Change Request: Turn on MFA for admins"
    )
    assert "Recommendation source: Microsoft Secure Score" in _block(record)
    assert record["priority"] == str(priority)
    assert record["correlation_id"] == ticket["id"]
    assert ticket["number"].startswith("CHG")
    assert (ticket["state"], ticket["stateName"], ticket["priority"]) == ("-5", "New", priority)
    assert "change_request.do%3Fsys_id%3D" in ticket["url"]


async def test_name_description_and_category_come_from_secure_score(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    body = ticket_body(
        name=None, description=None, recommendationCategory=None, improvementActionId="AdminMFAV2",
        recommendationSource="microsoft",
    )  # fmt: skip
    ticket = (await create(stack, tenant, body)).json()
    assert (
        ticket["name"] == "Ensure multifactor authentication is enabled for all users in administrative roles"
    )
    assert ticket["recommendationCategory"] == "Identity"
    assert ticket["improvementActionId"] == "AdminMFAV2"
    assert ticket["description"].startswith("1. Sign in to the Microsoft Entra admin center")
    assert "<" not in ticket["description"]  # Graph's HTML became text
    [record] = await records(stack.simulator, "incident")
    assert record["short_description"] == ticket["name"]
    assert "Improvement action: AdminMFAV2" in _block(record)
    assert (
        "Improvement action link: https://portal.azure.com/#view/Microsoft_AAD_ConditionalAccess/"
        "ConditionalAccessBlade/~/Policies"
    ) in _block(record)

    # Given fields win over Secure Score's; a device action's category is "Devices".
    own = ticket_body(name="Our own name", recommendationCategory=None, improvementActionId="scid_2000")
    device = (await create(stack, tenant, own)).json()
    assert (device["name"], device["recommendationCategory"]) == ("Our own name", "Devices")

    unknown = await create(stack, tenant, ticket_body(improvementActionId="NoSuchAction"), expect=400)
    assert unknown.json()["error"]["fields"][0]["field"] == "improvementActionId"
    assert len(await records(stack.simulator, "incident")) == 2


async def test_a_repeat_returns_the_same_ticket_and_another_body_is_422(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    first = (await create(stack, tenant, ticket_body(), key="key-1")).json()
    again = await create(stack, tenant, ticket_body(), key="key-1", expect=200)
    assert again.json() == first
    reused = await create(stack, tenant, ticket_body(priority=5), key="key-1", expect=422)
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    # Without a key every request is a new ticket.
    await create(stack, tenant, ticket_body())
    await create(stack, tenant, ticket_body())
    assert len(await records(stack.simulator, "incident")) == 3


async def test_twenty_concurrent_requests_with_one_key_make_one_record(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    responses = await asyncio.gather(
        *(create(stack, tenant, ticket_body(), key="same-key", expect=None) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await records(stack.simulator, "incident")) == 1


@pytest.mark.parametrize("kind", ["drop", "500"])
async def test_an_answer_lost_after_servicenow_created_the_record_makes_no_duplicate(
    stack: Stack, kind: str
) -> None:
    tenant = await connected_tenant(stack)
    fast_servicenow(stack)
    await fault(
        stack.simulator, kind, method="POST", path_prefix="/api/now/table/incident", after_processing=True
    )
    first = await create(stack, tenant, ticket_body(), key="lost-answer")
    again = await create(stack, tenant, ticket_body(), key="lost-answer", expect=200)
    assert again.json()["id"] == first.json()["id"]
    [record] = await records(stack.simulator, "incident")
    assert record["correlation_id"] == first.json()["id"]


async def test_a_crash_between_servicenow_and_our_row_is_finished_by_the_retry(stack: Stack) -> None:
    """The process died after ServiceNow's 201: a claim in progress, a record, no ticket row."""
    tenant = await connected_tenant(stack)
    ticket_id = new_ticket_id()
    seeded = await stack.simulator.control(
        "POST", "tables/incident/seed", {"count": 1, "template": {"correlation_id": ticket_id}}
    )
    # The claim the dead request left: its lease ran out a while ago.
    body = ticket_body()
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    await stack.container.idempotency.claim(
        IdempotencyRecord(
            tenant_id=tenant, key_hash=idempotency_key_hash("crashed"), fingerprint=request_fingerprint(CreateTicket.model_validate(body)),
            ticket_id=ticket_id, status="in_progress", created_by=stack.user_id(tenant, WRITER),
            created_by_name=WRITER, created_at=long_ago, lease_until=long_ago + timedelta(seconds=90),
        )
    )  # fmt: skip
    finished = (await create(stack, tenant, body, key="crashed")).json()
    assert (finished["id"], finished["number"]) == (ticket_id, seeded["numbers"][0])
    assert len(await records(stack.simulator, "incident")) == 1


async def test_a_timeout_after_servicenow_processed_the_create_makes_no_duplicate(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    fast_servicenow(stack, timeout_s=0.5)
    await fault(
        stack.simulator, "timeout", method="POST", path_prefix="/api/now/table/incident",
        after_processing=True, delay_seconds=3,
    )  # fmt: skip
    ticket = (await create(stack, tenant, ticket_body(), key="slow")).json()
    assert [r["correlation_id"] for r in await records(stack.simulator, "incident")] == [ticket["id"]]
    assert (await create(stack, tenant, ticket_body(), key="slow", expect=200)).json()["id"] == ticket["id"]


async def test_an_expired_access_token_is_refreshed_transparently(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    await create(stack, tenant, ticket_body())
    await stack.simulator.control("POST", "tokens/expire", {})
    await create(stack, tenant, ticket_body())
    [grant] = await stack.simulator.tokens()
    assert len(grant["access_tokens"]) == 2
    assert len(await records(stack.simulator, "incident")) == 2
    assert (await api.status(stack, tenant))["status"] == "connected"


async def test_a_revoked_grant_is_409_and_the_connection_needs_reauthorization(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    await stack.simulator.control("POST", "tokens/revoke", {})
    await stack.simulator.control("POST", "tokens/expire", {})
    refused = await create(stack, tenant, ticket_body(), key="after-revoke", expect=409)
    assert refused.json()["error"]["code"] == "reauthorization_required"
    assert (await api.status(stack, tenant))["status"] == "reauthorization_required"
    again = await create(stack, tenant, ticket_body(), key="after-revoke", expect=409)
    assert again.json()["error"]["code"] == "reauthorization_required"
    assert await records(stack.simulator, "incident") == []


@pytest.mark.parametrize("kind", ["429", "503"])
async def test_a_short_burst_is_retried(stack: Stack, kind: str) -> None:
    tenant = await connected_tenant(stack)
    fast_servicenow(stack)
    await fault(
        stack.simulator, kind, count=2, method="POST", path_prefix="/api/now/table/incident", retry_after=1
    )
    ticket = (await create(stack, tenant, ticket_body(), key=f"burst-{kind}")).json()
    assert [r["correlation_id"] for r in await records(stack.simulator, "incident")] == [ticket["id"]]


async def test_a_long_burst_is_202_and_the_worker_makes_one_record(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    # A bare 503 may come after the work was done: each is looked up, and no other create goes
    # before the settle window (made short here) has passed; then the worker goes on.
    policy = TicketingPolicy(create_attempts=2, max_retry_wait_s=2.0, settle_window=timedelta(seconds=1))
    fast_servicenow(stack, policy=policy)
    await fault(stack.simulator, "503", count=50, method="POST", path_prefix="/api/now/table/incident")
    accepted = await create(stack, tenant, ticket_body(), key="long-burst", expect=202)
    assert accepted.json()["status"] == "creating"
    assert accepted.headers["Location"] == f"/api/tickets/{accepted.json()['id']}"
    await stack.simulator.control("DELETE", "faults")
    ticket = await settled(stack, tenant, accepted.json()["id"])
    assert ticket["status"] == "created"
    assert [r["correlation_id"] for r in await records(stack.simulator, "incident")] == [ticket["id"]]
    assert (await create(stack, tenant, ticket_body(), key="long-burst", expect=200)).json() == ticket
    # A 429 asking for longer than we wait inside a request is passed on, not slept through.
    await fault(stack.simulator, "429", method="POST", path_prefix="/api/now/table/incident", retry_after=120)
    limited = await create(stack, tenant, ticket_body(), key="limited", expect=503)
    assert limited.headers["Retry-After"] == "120"


async def test_listing_paging_filters_and_the_summary_with_custom_state_names(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    created = []
    for index, kind in enumerate(["incident", "change_request", "incident", "incident", "change_request"]):
        created.append((await create(stack, tenant, ticket_body(type=kind, name=f"T{index}"))).json())
    newest_first = [t["id"] for t in reversed(created)]

    seen: list[str] = []
    token = None
    for _ in range(5):
        params: dict[str, Any] = {"top": 2, **({"continuationToken": token} if token else {})}
        page = await get(stack, tenant, **params)
        assert len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        token = page["continuationToken"]
        if token is None:
            break
    assert seen == newest_first
    everything = await get(stack, tenant)
    assert [t["id"] for t in everything["items"]] == newest_first
    assert everything["continuationToken"] is None
    changes = await get(stack, tenant, type="change_request")
    assert [t["name"] for t in changes["items"]] == ["T4", "T1"]

    # The sync moves states; here the row is changed directly. Custom names apply.
    await stack.merge_row("tickets", {"PartitionKey": tenant, "RowKey": created[0]["id"], "State": "6"})
    await api.set_state_names(
        stack, tenant, {"incident": {"6": "Fixed"}, "change_request": {"-5": "Proposed"}}
    )
    resolved = await get(stack, tenant, state="6")
    assert [(t["id"], t["stateName"]) for t in resolved["items"]] == [(created[0]["id"], "Fixed")]

    summary = await get(stack, tenant, "/summary")
    incident = {s["state"]: (s["name"], s["count"]) for s in summary["incident"]["states"]}
    change = {s["state"]: (s["name"], s["count"]) for s in summary["change_request"]["states"]}
    assert summary["incident"]["total"] == 3
    assert summary["change_request"]["total"] == 2
    assert incident["1"] == ("New", 2)
    assert incident["6"] == ("Fixed", 1)
    assert incident["7"] == ("Closed", 0)
    assert change["-5"] == ("Proposed", 2)

    for bad in (
        {"top": 0},
        {"top": 101},
        {"type": "problem"},
        {"continuationToken": "not-a-token"},
        {"x": 1},
    ):
        error = await get(stack, tenant, expect=400, **bad)
        assert error["error"]["code"] == "validation_error"


async def test_another_tenants_tickets_are_invisible(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    other = await connected_tenant(stack, await stack.start_simulator())
    ticket = (await create(stack, tenant, ticket_body())).json()
    missing = await get(stack, other, f"/{ticket['id']}", expect=404)
    assert missing["error"]["code"] == "not_found"
    assert (await get(stack, other))["items"] == []
    assert (await get(stack, other, "/summary"))["incident"]["total"] == 0
    # A continuation token names its tenant: another tenant cannot resume from it.
    for _ in range(2):
        await create(stack, tenant, ticket_body())
    token = (await get(stack, tenant, top=1))["continuationToken"]
    await get(stack, other, expect=400, top=1, continuationToken=token)


async def test_requests_that_cannot_create_a_ticket(stack: Stack) -> None:
    tenant = stack.new_tenant()
    not_ready = await create(stack, tenant, ticket_body(), expect=409)
    assert not_ready.json()["error"]["code"] == "connection_not_ready"
    await api.configure(stack, tenant, stack.simulator)  # pending authorization: still not ready
    assert (await create(stack, tenant, ticket_body(), expect=409)).json()["error"][
        "code"
    ] == "connection_not_ready"

    tenant = await connected_tenant(stack)
    yesterday = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    for body in (
        ticket_body(dueDate=yesterday),
        ticket_body(priority=6),
        ticket_body(priority="2"),
        ticket_body(name="x" * 161),
        ticket_body(description="x" * 4001),
        ticket_body(type="problem"),
        ticket_body(recommendationSource="partner"),
        ticket_body(recommendationCategory="Network"),
        ticket_body(dueDate="2030-01-01T00:00:00"),
        ticket_body(name=None),
    ):
        bad = await create(stack, tenant, body, expect=400)
        assert bad.json()["error"]["code"] == "validation_error", body
    reader_post = await stack.client.post(
        "/api/tickets", json=ticket_body(), headers=stack.as_user(tenant, "Tickets.Read")
    )
    assert reader_post.status_code == 403
    headers = {**writer(stack, tenant), "Idempotency-Key": "k" * 256}
    too_long = await stack.client.post("/api/tickets", json=ticket_body(), headers=headers)
    assert too_long.status_code == 400
    assert await records(stack.simulator, "incident") == []


async def test_a_create_servicenow_commits_after_our_timeout_is_202_and_finished_by_the_worker(
    stack: Stack,
) -> None:
    """Our timeout ends before ServiceNow's transaction does: it commits after our lookup. The
    portal gets 202 and never has to retry: the queue worker finds the record after the window."""
    tenant = await connected_tenant(stack)
    policy = TicketingPolicy(settle_window=timedelta(seconds=4), max_retry_wait_s=1.0)  # answer, not wait
    fast_servicenow(stack, timeout_s=0.5, policy=policy)
    await fault(
        stack.simulator, "timeout", method="POST", path_prefix="/api/now/table/incident",
        late_commit=True, delay_seconds=2.0,
    )  # fmt: skip
    first = await create(stack, tenant, ticket_body(), key="late", expect=202)
    accepted = first.json()
    assert set(accepted) == TICKET_FIELDS
    assert (accepted["status"], accepted["number"], accepted["sysId"]) == ("creating", "", "")
    assert (accepted["url"], accepted["state"], accepted["failureReason"]) == ("", "", None)
    assert first.headers["Location"] == f"/api/tickets/{accepted['id']}"
    assert "Retry-After" not in first.headers
    assert await records(stack.simulator, "incident") == []  # still running when we looked
    # The key again while it is creating: the same ticket, 202, at once.
    again = await create(stack, tenant, ticket_body(), key="late", expect=202)
    assert again.json() == accepted
    assert (await get(stack, tenant, f"/{accepted['id']}"))["status"] == "creating"

    ticket = await settled(stack, tenant, accepted["id"])
    [record] = await records(stack.simulator, "incident")
    assert (ticket["status"], ticket["failureReason"]) == ("created", None)
    assert (record["correlation_id"], record["number"], record["sys_id"]) == (
        ticket["id"], ticket["number"], ticket["sysId"],
    )  # fmt: skip
    assert (await stack.simulator.stats())["POST /api/now/table/incident"] == 1
    assert (await create(stack, tenant, ticket_body(), key="late", expect=200)).json() == ticket
    [listed] = (await get(stack, tenant))["items"]
    assert (listed["id"], listed["status"], listed["number"]) == (ticket["id"], "created", record["number"])


async def test_a_refused_lookup_after_a_lost_answer_keeps_the_key(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    fast_servicenow(stack, policy=TicketingPolicy(settle_window=timedelta(seconds=1)))
    await fault(
        stack.simulator, "drop", method="POST", path_prefix="/api/now/table/incident", after_processing=True
    )
    await fault(stack.simulator, "403", method="GET", path_prefix="/api/now/table/incident")
    refused = await create(stack, tenant, ticket_body(), key="refused-lookup", expect=502)
    assert refused.json()["error"]["code"] == "upstream_rejected"
    [made] = await records(stack.simulator, "incident")
    # The same key again finds the record (once the settle window is over), rather than making another.
    ticket = (await create(stack, tenant, ticket_body(), key="refused-lookup", expect=201)).json()
    assert ticket["id"] == made["correlation_id"]
    assert len(await records(stack.simulator, "incident")) == 1


async def test_a_create_past_its_deadline_is_503_and_keeps_the_lease(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    policy = TicketingPolicy(create_deadline_s=1.0, wait_for_claim_s=0.0)
    fast_servicenow(stack, timeout_s=20.0, policy=policy)
    await fault(
        stack.simulator, "timeout", method="POST", path_prefix="/api/now/table/incident", delay_seconds=15
    )
    started = asyncio.get_running_loop().time()
    slow = await create(stack, tenant, ticket_body(), key="deadline", expect=503)
    # Cut by the 1 s deadline, not ended by ServiceNow (15 s) or the read timeout (20 s); the margin
    # is for a loaded machine.
    assert asyncio.get_running_loop().time() - started < 10
    assert slow.json()["error"]["code"] == "upstream_unavailable"
    # The POST the deadline cut may still commit: the settle window counts from the cut.
    assert 70 <= int(slow.headers["Retry-After"]) <= 75
    # The POST may still be running in ServiceNow: nobody takes the key over before the window ends.
    busy = await create(stack, tenant, ticket_body(), key="deadline", expect=409)
    assert busy.json()["error"]["code"] == "idempotency_key_in_progress"
    assert (await stack.simulator.stats())["POST /api/now/table/incident"] == 1
