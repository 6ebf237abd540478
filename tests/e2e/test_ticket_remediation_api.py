"""What the API shows of the Secure Score check through the local host: a ticket's remediation
block, the summary's flag counts, the list's flag filter, and the tenant's write-back switch.

The check itself is another part of the app; here its results are written straight onto the
ticket rows, as it stores them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e import api
from tests.e2e.conftest import Stack
from tests.e2e.tickets_api import connected_tenant, create, get, ticket_body

pytestmark = pytest.mark.e2e

CHECKED = datetime(2030, 1, 15, 3, 0, tzinfo=UTC)
SCID_SKIPPED = "Device controls (scid_) cannot be updated through Microsoft Graph."


def check_columns(**changes: Any) -> dict[str, Any]:
    """The columns a daily check writes on a ticket row: a control still at 0 of 10 points."""
    return {
        "RemediationStatus": "in_progress",
        "RemediationScore": 0.0,
        "RemediationMaxScore": 10.0,
        "RemediationCheckedAt": CHECKED,
        "ClosedWithoutRemediation": False,
        "RemediatedWhileOpen": False,
        "Regressed": False,
        **changes,
    }


async def seed(stack: Stack, tenant: str, ticket_id: str, **columns: Any) -> None:
    await stack.merge_row("tickets", {"PartitionKey": tenant, "RowKey": ticket_id, **columns})


async def test_flags_show_on_the_ticket_in_the_summary_and_filter_the_list(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    action = {"improvementActionId": "AdminMFAV2", "recommendationSource": "microsoft"}
    closed = (await create(stack, tenant, ticket_body(name="Closed", **action))).json()
    regressed = (
        await create(stack, tenant, ticket_body(name="Regressed", type="change_request", **action))
    ).json()
    device = (await create(stack, tenant, ticket_body(name="Device", improvementActionId="scid_2000"))).json()
    plain = (await create(stack, tenant, ticket_body(name="Plain"))).json()
    assert plain["remediation"] is None
    assert closed["remediation"] is None  # not checked yet

    closed_at = CHECKED - timedelta(days=8)
    await seed(
        stack,
        tenant,
        closed["id"],
        State="7",
        ClosedAt=closed_at,
        **check_columns(ClosedWithoutRemediation=True),
    )
    await seed(
        stack, tenant, regressed["id"],
        **check_columns(Regressed=True, RemediationScore=4.0, RemediationCompletedAt=CHECKED - timedelta(days=3)),
        WriteBackComment="ServiceNow change request CHG0010001 (New)", WriteBackAt=CHECKED,
    )  # fmt: skip
    await seed(stack, tenant, device["id"], WriteBackError=SCID_SKIPPED)

    shown = await get(stack, tenant, f"/{closed['id']}")
    assert shown["remediation"] == {
        "status": "in_progress",
        "score": 0.0,
        "maxScore": 10.0,
        "checkedAt": "2030-01-15T03:00:00Z",
        "completedAt": None,
        "closedAt": "2030-01-07T03:00:00Z",
        "flags": {"closedWithoutRemediation": True, "remediatedWhileOpen": False, "regressed": False},
        "writeBack": None,
    }
    written = (await get(stack, tenant, f"/{regressed['id']}"))["remediation"]
    assert written["flags"]["regressed"] is True
    assert written["writeBack"] == {
        "comment": "ServiceNow change request CHG0010001 (New)",
        "writtenAt": "2030-01-15T03:00:00Z",
        "error": None,
    }
    skipped = (await get(stack, tenant, f"/{device['id']}"))["remediation"]
    assert (skipped["status"], skipped["checkedAt"]) == (None, None)
    assert skipped["writeBack"] == {"comment": None, "writtenAt": None, "error": SCID_SKIPPED}

    summary = await get(stack, tenant, "/summary")
    assert summary["incident"]["flags"] == {
        "closedWithoutRemediation": 1,
        "remediatedWhileOpen": 0,
        "regressed": 0,
    }
    assert summary["change_request"]["flags"] == {
        "closedWithoutRemediation": 0,
        "remediatedWhileOpen": 0,
        "regressed": 1,
    }

    def names(page: dict[str, Any]) -> list[str]:
        return [t["name"] for t in page["items"]]

    assert names(await get(stack, tenant, flag="closedWithoutRemediation")) == ["Closed"]
    assert names(await get(stack, tenant, flag="closedWithoutRemediation", state="7")) == ["Closed"]
    assert names(await get(stack, tenant, flag="closedWithoutRemediation", type="change_request")) == []
    assert names(await get(stack, tenant, flag="regressed")) == ["Regressed"]
    assert names(await get(stack, tenant, flag="remediatedWhileOpen")) == []
    for bad in ("closed", "REGRESSED", ""):
        error = await get(stack, tenant, expect=400, flag=bad)
        assert error["error"]["code"] == "validation_error"
        assert [f["field"] for f in error["error"]["fields"]] == ["flag"]


async def test_the_write_back_switch(stack: Stack) -> None:
    tenant = stack.new_tenant()
    admin = stack.as_admin(tenant)
    path = "/api/provisioning/secure-score"
    never = await stack.client.put(path, json={"writeBack": True}, headers=admin)
    assert never.status_code == 409, never.text
    assert never.json()["error"]["code"] == "connection_not_ready"
    assert (await api.status(stack, tenant))["secureScore"] == {
        "writeBack": False,
        "workNotes": False,
        "checkedAt": None,
        "pausedUntil": None,
    }

    await api.configure(stack, tenant, stack.simulator)  # configured, not yet authorized, is enough
    on = await stack.client.put(path, json={"writeBack": True}, headers=admin)
    assert on.status_code == 200, on.text
    assert on.json()["status"] == "pending_authorization"
    assert on.json()["secureScore"]["writeBack"] is True
    assert (await api.status(stack, tenant))["secureScore"]["writeBack"] is True
    [row] = await stack.rows("connections", tenant)
    assert row["SecureScoreWriteBack"] is True

    writer = stack.as_user(tenant, "Tickets.ReadWrite")
    assert (await stack.client.put(path, json={"writeBack": False}, headers=writer)).status_code == 403
    bodies: list[Any] = [{}, {"writeBack": "false"}, {"writeBack": 0}, {"writeBack": False, "other": 1}, []]
    for bad in bodies:
        refused = await stack.client.put(path, json=bad, headers=admin)
        assert refused.status_code == 400, (bad, refused.text)
    assert (await api.status(stack, tenant))["secureScore"]["writeBack"] is True

    off = await stack.client.put(path, json={"writeBack": False}, headers=admin)
    assert off.json()["secureScore"]["writeBack"] is False
