"""A ticket's timeline end to end: what the create, the sync's poll, a push, a note and a deletion
in ServiceNow record, read back through GET /api/tickets/{id}/events, oldest first."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.e2e import sync_api
from tests.e2e.conftest import Stack
from tests.e2e.push_api import play_rule, rotate, state_within
from tests.e2e.sync_api import run_timer, use_sync, wait_synced
from tests.e2e.tickets_api import WRITER, connected_tenant, create, reader, ticket_body, writer

pytestmark = pytest.mark.e2e


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _timeline(stack: Stack, tenant: str, ticket_id: str, expect: int = 200) -> Any:
    response = await stack.client.get(f"/api/tickets/{ticket_id}/events", headers=reader(stack, tenant))
    assert response.status_code == expect, response.text
    return response.json()


async def test_a_tickets_timeline_across_create_poll_push_note_and_deletion(stack: Stack) -> None:
    use_sync(stack, reconcile_every=timedelta(days=365), deletion_grace=timedelta(0))
    tenant = await connected_tenant(stack)
    created = await create(stack, tenant, ticket_body())
    ticket = created.json()
    await run_timer(stack)
    first = await wait_synced(stack, tenant, None)  # the record's first version: no state change

    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="2")
    await run_timer(stack)
    second = await wait_synced(stack, tenant, first["lastSyncAt"])
    row = await sync_api.ticket_row(stack, tenant, ticket["id"])
    assert row["State"] == "2"
    assert row["ServicenowModCount"] >= 1

    await play_rule(stack.simulator, await rotate(stack, tenant))
    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="3")
    await state_within(stack, tenant, ticket["id"], "3", seconds=10)

    headers = {**writer(stack, tenant), "Idempotency-Key": "timeline-note"}
    note = {"kind": "work_note", "text": "Rolled out to the pilot group."}
    added = await stack.client.post(f"/api/tickets/{ticket['id']}/notes", json=note, headers=headers)
    assert added.status_code == 201, added.text

    await stack.simulator.control("DELETE", f"records/incident/{ticket['sysId']}")
    use_sync(stack, reconcile_every=timedelta(0), deletion_grace=timedelta(0))
    await run_timer(stack)
    await wait_synced(stack, tenant, second["lastSyncAt"])

    timeline = await _timeline(stack, tenant, ticket["id"])

    assert [event["type"] for event in timeline["events"]] == [
        "created",
        "state_changed",
        "state_changed",
        "note_added",
        "deleted_in_servicenow",
    ]
    made, moved, pushed, noted, deleted = timeline["events"]
    assert made["requestId"] == created.headers["X-Request-Id"]
    assert made["createdByName"] == WRITER
    assert (moved["from"], moved["to"], moved["via"]) == ("1", "2", "poll")
    assert moved["modCount"] >= 1
    assert _instant(moved["seenAt"]) >= _instant(moved["at"])
    assert (pushed["from"], pushed["to"], pushed["via"]) == ("2", "3", "push")
    assert pushed["modCount"] > moved["modCount"]
    assert (noted["kind"], noted["author"]) == ("work_note", WRITER)
    assert _instant(deleted["at"]) >= _instant(noted["at"])
    assert (timeline["truncated"], timeline["limit"]) == (False, 500)
    assert [
        t["id"]
        for t in (await stack.client.get("/api/tickets", headers=reader(stack, tenant))).json()["items"]
    ] == [ticket["id"]]  # the event rows beside the ticket's are never listed as tickets


async def test_an_unknown_or_another_tenants_ticket_has_no_timeline(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    ticket = (await create(stack, tenant, ticket_body())).json()
    other = stack.new_tenant()

    body = await _timeline(stack, other, ticket["id"], expect=404)
    assert body["error"]["code"] == "not_found"
    await _timeline(stack, tenant, "0000000000000deadbeef", expect=404)
    no_role = await stack.client.get(f"/api/tickets/{ticket['id']}/events", headers=stack.as_user(tenant))
    assert no_role.status_code == 403
