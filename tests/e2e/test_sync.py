"""The sync end to end: the timer (fired through the host's admin API) enqueues on the real Azurite
queue, the queue worker pulls state changes from the ServiceNow simulator into our rows, and the
portal reads them through the API."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from shared.identity import Role
from shared.records import OAuthState, TokenSet
from shared.stores.secrets import tokens_name
from tests.e2e import api, sync_api
from tests.e2e.conftest import Stack
from tests.e2e.sync_api import run_timer, use_sync, wait_synced
from tests.e2e.tickets_api import connected_tenant, create, get, ticket_body

pytestmark = pytest.mark.e2e


async def _tickets(stack: Stack, tenant: str, kind: str, count: int) -> list[dict[str, Any]]:
    return [
        (await create(stack, tenant, ticket_body(type=kind, name=f"{kind} {n}"))).json() for n in range(count)
    ]


async def _state(stack: Stack, tenant: str, ticket_id: str) -> str:
    ticket = await get(stack, tenant, f"/{ticket_id}")
    return str(ticket["state"])


def _table_gets(stats: dict[str, int], table: str) -> int:
    return sum(count for key, count in stats.items() if key == f"GET /api/now/table/{table}")


async def test_the_timer_pulls_state_changes_of_both_types_across_pages(stack: Stack) -> None:
    use_sync(stack, page_size=5)
    tenant = await connected_tenant(stack)
    incidents = await _tickets(stack, tenant, "incident", 7)
    changes = await _tickets(stack, tenant, "change_request", 6)
    await run_timer(stack)
    first = await wait_synced(stack, tenant, None)
    assert first["lastError"] is None

    for ticket in incidents:
        await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="2")
    for ticket in changes:
        await sync_api.update_record(stack.simulator, "change_request", ticket["sysId"], state="-1")
    await stack.simulator.control("POST", "stats/reset")
    await run_timer(stack)
    second = await wait_synced(stack, tenant, first["lastSyncAt"])

    assert second["lastError"] is None
    assert [await _state(stack, tenant, t["id"]) for t in incidents] == ["2"] * 7
    assert [await _state(stack, tenant, t["id"]) for t in changes] == ["-1"] * 6
    listed = await get(stack, tenant, "", type="change_request", state="-1")
    assert {t["id"] for t in listed["items"]} == {t["id"] for t in changes}
    # Seven and six changes in pages of five: two pages per table, nothing per ticket.
    stats = await stack.simulator.stats()
    assert _table_gets(stats, "incident") == 2
    assert _table_gets(stats, "change_request") == 2
    assert not any("{sys_id}" in key for key in stats)


async def test_a_manual_sync_is_queued_for_the_callers_tenant_only(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    [ticket] = await _tickets(stack, tenant, "incident", 1)
    await sync_api.update_record(stack.simulator, "incident", ticket["sysId"], state="3")

    queued = await sync_api.sync_now(stack, tenant)
    assert queued["status"] == "queued"
    synced = await wait_synced(stack, tenant, None)
    assert synced["lastError"] is None
    assert await _state(stack, tenant, ticket["id"]) == "3"

    reader = stack.as_user(tenant, Role.READ_WRITE, name="Wendy Writer")
    assert (await sync_api.sync_now(stack, tenant, headers=reader, expect=403))["error"][
        "code"
    ] == "forbidden"
    unconnected = stack.new_tenant()
    answer = await sync_api.sync_now(stack, unconnected, expect=409)
    assert answer["error"]["code"] == "connection_not_ready"


async def test_an_update_in_the_same_second_as_the_watermark_is_not_missed(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    first, second = await _tickets(stack, tenant, "incident", 2)
    assert await sync_api.run_worker(stack, tenant) == "succeeded"  # the first sync lists everything

    # Within one ServiceNow second: a change, a sync (its watermark is that second), then more
    # changes in that same second. The instance's clock is stopped so that this holds on any machine.
    await stack.simulator.control("POST", "clock", {"frozen": True})
    before = await sync_api.update_record(stack.simulator, "incident", first["sysId"], state="2")
    assert await sync_api.run_worker(stack, tenant) == "succeeded"
    later = await sync_api.update_record(stack.simulator, "incident", first["sysId"], state="6")
    other = await sync_api.update_record(stack.simulator, "incident", second["sysId"], state="3")
    watermark = (json.loads((await sync_api.connection_row(stack, tenant))["Watermarks"]))["incident"]
    assert before["sys_updated_on"] == later["sys_updated_on"] == other["sys_updated_on"] == watermark
    await stack.simulator.control("POST", "clock", {"frozen": False})

    assert await sync_api.run_worker(stack, tenant) == "succeeded"
    assert await _state(stack, tenant, first["id"]) == "6"
    assert await _state(stack, tenant, second["id"]) == "3"


async def test_a_token_about_to_expire_is_refreshed_before_the_pull(stack: Stack) -> None:
    tenant = await connected_tenant(stack)
    stored = json.loads(stack.vault_value(tokens_name(tenant)) or "{}")
    # Our clock says the access token dies in 5 minutes (inside the 10-minute margin), and the
    # instance has expired it already: only a refreshed token can read the records.
    await stack.container.secrets.set_tokens(
        tenant,
        TokenSet(
            access_token=SecretStr(stored["access_token"]),
            refresh_token=SecretStr(stored["refresh_token"]),
            access_token_expires_at=datetime.now(UTC) + timedelta(minutes=5),
            refresh_token_expires_at=datetime.fromisoformat(stored["refresh_token_expires_at"]),
        ),
    )
    await stack.simulator.control("POST", "tokens/expire", {})
    await stack.simulator.control("POST", "stats/reset")

    await run_timer(stack)
    synced = await wait_synced(stack, tenant, None)

    assert synced["lastError"] is None
    assert synced["status"] == "connected"
    stats = await stack.simulator.stats()
    assert stats.get("POST /oauth_token.do") == 1
    assert stats.get("GET /api/now/table/incident") == 1  # no 401 and replay: refreshed first
    refreshed = json.loads(stack.vault_value(tokens_name(tenant)) or "{}")
    assert refreshed["access_token"] != stored["access_token"]
    assert refreshed["refresh_token"] == stored["refresh_token"]  # ServiceNow does not rotate it
    expiry = datetime.fromisoformat(synced["accessTokenExpiresAt"])
    assert expiry > datetime.now(UTC) + timedelta(minutes=25)
    assert synced["refreshTokenExpiresSoon"] is False


async def test_a_revoked_grant_needs_reauthorization_and_later_timers_leave_it_alone(stack: Stack) -> None:
    revoked = await connected_tenant(stack)
    healthy_simulator = await stack.start_simulator()
    healthy = await connected_tenant(stack, healthy_simulator)
    await stack.simulator.control("POST", "tokens/revoke", {})
    await stack.simulator.control("POST", "tokens/expire", {})

    await run_timer(stack)
    status = await sync_api.wait_status(
        stack, revoked, lambda s: s["status"] == "reauthorization_required", "reauthorization_required"
    )
    assert status["lastError"]
    assert "re-authorize" in status["lastError"]
    healthy_first = await wait_synced(stack, healthy, None)

    await stack.simulator.control("POST", "stats/reset")
    await run_timer(stack)
    await wait_synced(stack, healthy, healthy_first["lastSyncAt"])  # the second run has happened
    assert await stack.simulator.stats() == {}  # nothing at all reached the revoked tenant's instance
    assert (await api.status(stack, revoked))["status"] == "reauthorization_required"


async def test_one_failing_tenant_does_not_stop_the_others_and_ends_in_the_poison_queue(stack: Stack) -> None:
    use_sync(stack)
    stack.host.set_queue_visibility_timeout(0)  # host.json's 10 s between retries, made 0 for the test
    healthy = [await connected_tenant(stack) for _ in range(2)]
    failing_simulator = await stack.start_simulator()
    failing = await connected_tenant(stack, failing_simulator)
    await failing_simulator.control(
        "POST", "faults", {"kind": "503", "count": 1000, "path_prefix": "/api/now/table/"}
    )

    await run_timer(stack)

    for tenant in healthy:
        status = await wait_synced(stack, tenant, None)
        assert status["lastError"] is None
    [message] = await sync_api.wait_poisoned(stack, failing)
    assert message["reason"] == "timer"
    status = await api.status(stack, failing)
    assert status["status"] == "connected"  # a transient failure is not a reason to re-authorize
    assert status["lastSyncAt"] is None
    assert "unavailable" in status["lastError"]
    # One message, host.json's maxDequeueCount (5) attempts, one refused query each.
    assert (await failing_simulator.control("GET", "faults"))["fired"] == 5


async def test_a_record_deleted_in_servicenow_is_marked_deleted(stack: Stack) -> None:
    use_sync(stack, reconcile_every=timedelta(0), deletion_grace=timedelta(0))
    tenant = await connected_tenant(stack)
    kept, deleted = await _tickets(stack, tenant, "incident", 2)
    await stack.simulator.control("DELETE", f"records/incident/{deleted['sysId']}")

    await run_timer(stack)
    await wait_synced(stack, tenant, None)

    gone = await sync_api.ticket_row(stack, tenant, deleted["id"])
    assert gone["DeletedInServicenowAt"] is not None
    assert "DeletedInServicenowAt" not in await sync_api.ticket_row(stack, tenant, kept["id"])
    headers = stack.as_user(tenant, "Tickets.Read")
    shown = (await stack.client.get(f"/api/tickets/{deleted['id']}", headers=headers)).json()
    assert shown["deletedInServiceNowAt"] is not None
    assert shown["state"] == deleted["state"]  # the last state seen, not silently "New"
    still_there = (await stack.client.get(f"/api/tickets/{kept['id']}", headers=headers)).json()
    assert still_there["deletedInServiceNowAt"] is None


async def test_servicenow_refusing_the_query_is_recorded_once_per_timer_run_and_never_poisoned(
    stack: Stack,
) -> None:
    use_sync(stack, tables=("incident", "no_such_table"))  # the instance answers 400 Invalid table
    stack.host.set_queue_visibility_timeout(0)  # a retried message would come back at once
    tenant = await connected_tenant(stack)
    await _tickets(stack, tenant, "incident", 1)
    refused = "GET /api/now/table/no_such_table"

    await run_timer(stack)
    status = await sync_api.wait_status(stack, tenant, lambda s: s["lastError"], "lastError recorded")
    assert "Invalid table" in status["lastError"]
    assert status["status"] == "connected"
    assert status["lastSyncAt"] is None
    await asyncio.sleep(1.0)  # time enough for the host to retry, were the message failed
    assert (await stack.simulator.stats()).get(refused) == 1
    assert await sync_api.poisoned(stack, tenant) == []
    row = await sync_api.connection_row(stack, tenant)
    assert row.get("SyncLeaseUntil") is None
    assert "incident" in json.loads(row["Watermarks"])  # the table before it was synced

    await run_timer(stack)  # the next scheduled run tries again, once
    deadline = asyncio.get_running_loop().time() + sync_api.WAIT_S
    while (await stack.simulator.stats()).get(refused) != 2:
        assert asyncio.get_running_loop().time() < deadline, "the second timer run did not reach the instance"
        await asyncio.sleep(0.05)

    use_sync(stack)  # the admin fixed the instance (here: we stop asking for that table)
    assert await sync_api.run_worker(stack, tenant) == "succeeded"
    synced = await api.status(stack, tenant)
    assert synced["lastError"] is None
    assert synced["lastSyncAt"] is not None
    row = await sync_api.connection_row(stack, tenant)
    assert row.get("SyncLeaseUntil") is None  # released: the row held this run's own lease value
    assert row.get("LastSyncStartedAt") is not None


async def test_a_long_retry_after_pauses_the_tenant_and_later_timers_leave_it_alone(stack: Stack) -> None:
    use_sync(stack)
    paused = await connected_tenant(stack)
    healthy_simulator = await stack.start_simulator()
    healthy = await connected_tenant(stack, healthy_simulator)
    await stack.simulator.control(
        "POST", "faults", {"kind": "429", "count": 1, "retry_after": 3600, "path_prefix": "/api/now/table/"}
    )

    await run_timer(stack)
    status = await sync_api.wait_status(stack, paused, lambda s: s["lastError"], "lastError recorded")
    assert "ServiceNow asked us to wait" in status["lastError"]
    assert status["status"] == "connected"
    not_before = (await sync_api.connection_row(stack, paused))["SyncNotBefore"]
    assert sync_api.soon(55) < not_before < sync_api.soon(65)
    healthy_first = await wait_synced(stack, healthy, None)
    assert await sync_api.poisoned(stack, paused) == []

    await stack.simulator.control("POST", "stats/reset")
    await run_timer(stack)
    await wait_synced(stack, healthy, healthy_first["lastSyncAt"])  # the second run has happened
    assert await stack.simulator.stats() == {}  # nothing reached the paused tenant's instance
    assert await sync_api.run_worker(stack, paused) == "succeeded"  # a manual message is dropped too
    assert await stack.simulator.stats() == {}


async def test_the_timer_deletes_oauth_states_that_expired_over_a_day_ago(stack: Stack) -> None:
    now = datetime.now(UTC)
    states = stack.container.oauth_states

    def state(expires_at: datetime) -> OAuthState:
        return OAuthState(
            state_id=uuid.uuid4().hex, tenant_id=stack.new_tenant(), user_id="u", user_name="U",
            instance_url=stack.simulator.url, client_id="c",
            created_at=expires_at - timedelta(minutes=10), expires_at=expires_at,
        )  # fmt: skip

    old, recent = state(now - timedelta(days=2)), state(now - timedelta(hours=1))
    await states.add(old)
    await states.add(recent)

    await run_timer(stack)

    assert await stack.rows("oauthstates", old.state_id) == []
    assert len(await stack.rows("oauthstates", recent.state_id)) == 1


async def test_the_instances_own_state_labels_are_shown_under_the_tenants_custom_names(stack: Stack) -> None:
    use_sync(stack, reconcile_every=timedelta(0))
    tenant = await connected_tenant(stack)
    choices = await stack.simulator.control("GET", "records/sys_choice")
    [in_progress] = [row for row in choices["result"] if row["name"] == "incident" and row["value"] == "2"]
    await sync_api.update_record(
        stack.simulator, "sys_choice", in_progress["sys_id"], label="Work in Progress"
    )
    await api.set_state_names(stack, tenant, {"incident": {"6": "Fixed"}})

    await run_timer(stack)
    status = await wait_synced(stack, tenant, None)

    assert status["stateNames"]["incident"]["2"] == "Work in Progress"  # the instance's label
    assert status["stateNames"]["incident"]["6"] == "Fixed"  # the tenant's name wins
    assert status["stateNames"]["incident"]["1"] == "New"
