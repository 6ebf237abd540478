"""The sync's conditional writes to the connection row when they lose a race: another writer changes
the row between the write's read and the write itself, so the ETag no longer matches and the write
is decided again on the row that won. Each test pins one of the checks the sync makes on that row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from shared.errors import PreconditionFailed, UpstreamUnavailable
from shared.models import ConnectionStatus, SyncRequest
from shared.records import Connection
from tests.fakes.sync_world import NOW, TENANT, SyncWorld

Change = Callable[[Connection], dict[str, Any]]
THEIR_LEASE = NOW + timedelta(minutes=20)  # not this run's (NOW + 10 minutes)


@pytest.fixture
def world() -> SyncWorld:
    return SyncWorld.create()


def lose_after_request(world: SyncWorld, number: int, change: Change) -> None:
    """Right after the run's `number`th ServiceNow request, its next row write loses to `change`."""

    def arm(requests: int) -> None:
        if requests == number:
            world.connections.lose_next_write(TENANT, change)

    world.servicenow.between_requests.append(arm)


def another_worker_took_the_lease(row: Connection) -> dict[str, Any]:
    return {"sync_lease_until": THEIR_LEASE}


def reauthorized(row: Connection) -> dict[str, Any]:
    return {"connected_at": NOW + timedelta(seconds=30), "last_error": None}


def grant_died(row: Connection) -> dict[str, Any]:
    return {
        "status": ConnectionStatus.REAUTHORIZATION_REQUIRED,
        "last_error": "access_denied An admin must re-authorize the connection.",
    }


def reconfigured(row: Connection) -> dict[str, Any]:
    return {"instance": "fabrikam", "instance_url": "https://fabrikam.service-now.com", "watermarks": {}}


# --- the lease ---------------------------------------------------------------------------------------


async def test_a_lease_write_that_loses_to_another_worker_does_not_run(world: SyncWorld) -> None:
    world.connect()
    world.connections.lose_next_write(TENANT, another_worker_took_the_lease)

    outcome = await world.service().sync_tenant(world.request(at=NOW - timedelta(seconds=1)))

    assert outcome.skipped == "another sync of this tenant is running"
    assert world.row().sync_lease_until == THEIR_LEASE
    assert world.tokens.calls == []
    assert world.servicenow.requests == []
    assert world.queue.bodies == []  # that worker's run started after the request: it covers it


async def test_a_request_that_loses_the_lease_to_an_earlier_run_is_put_back_for_after_it(
    world: SyncWorld,
) -> None:
    world.connect()
    world.connections.lose_next_write(TENANT, lambda row: {"sync_lease_until": NOW + timedelta(minutes=9)})
    request = world.request(reason="manual")  # made after the other run started (a minute ago)

    outcome = await world.service().sync_tenant(request)

    assert outcome.skipped == "another sync of this tenant is running; asked again for after it"
    assert [SyncRequest.model_validate_json(body) for body in world.queue.bodies] == [request]
    assert world.queue.delays == [15]


async def test_a_lease_write_that_loses_to_a_finished_sync_does_not_run_again(world: SyncWorld) -> None:
    world.connect()
    world.connections.lose_next_write(TENANT, lambda row: {"last_sync_started_at": NOW})

    outcome = await world.service().sync_tenant(world.request(at=NOW - timedelta(seconds=1)))

    assert outcome.skipped == "the tenant was synced after this request was made"
    assert world.row().sync_lease_until is None
    assert world.tokens.calls == []


async def test_a_lease_write_that_keeps_losing_fails_the_message(world: SyncWorld) -> None:
    world.connect()
    for _ in range(3):  # others keep writing the row, none of them taking the lease
        world.connections.lose_next_write(
            TENANT, lambda row: {"updated_at": row.updated_at + timedelta(seconds=1)}
        )

    with pytest.raises(PreconditionFailed):  # the host retries the message
        await world.service().sync_tenant(world.request())
    assert world.tokens.calls == []


# --- the failure's status write ------------------------------------------------------------------------


async def test_a_failure_write_that_loses_to_a_reauthorization_records_nothing_on_the_new_grant(
    world: SyncWorld,
) -> None:
    world.connect(connected_at=NOW - timedelta(days=3))
    world.servicenow.fail["incident"] = UpstreamUnavailable("ServiceNow did not answer (query incident).")
    lose_after_request(world, 1, reauthorized)

    with pytest.raises(UpstreamUnavailable):
        await world.sync()

    row = world.row()
    assert row.connected_at == NOW + timedelta(seconds=30)
    assert row.last_error is None  # the old grant's failure is not the new one's
    assert row.sync_lease_until is None  # the lease is still released


async def test_a_failure_write_that_loses_to_another_worker_leaves_its_lease_and_news(
    world: SyncWorld,
) -> None:
    world.connect()
    world.servicenow.fail["incident"] = UpstreamUnavailable("ServiceNow did not answer (query incident).")
    lose_after_request(world, 1, another_worker_took_the_lease)

    with pytest.raises(UpstreamUnavailable):
        await world.sync()

    assert world.row().sync_lease_until == THEIR_LEASE
    assert world.row().last_error is None


# --- the success's status write ------------------------------------------------------------------------


async def test_a_success_write_that_loses_to_a_dead_grant_keeps_its_error(world: SyncWorld) -> None:
    world.connect()
    lose_after_request(world, 2, grant_died)  # after the last table's request: the final write

    outcome = await world.sync()

    assert outcome.skipped is None
    row = world.row()
    assert row.status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert row.last_error == "access_denied An admin must re-authorize the connection."
    assert row.sync_lease_until is None


async def test_a_success_write_that_loses_to_a_reconfiguration_leaves_the_new_instance_alone(
    world: SyncWorld,
) -> None:
    world.connect()
    world.ticket("change_request", "-1", "2025-03-01 11:30:00")
    lose_after_request(world, 2, reconfigured)

    await world.sync()

    row = world.row()
    assert row.instance_url == "https://fabrikam.service-now.com"
    assert row.watermarks == {}  # the old instance's marks mean nothing on the new one
    assert row.last_sync_at is None
    assert row.sync_lease_until is None


async def test_a_success_write_that_loses_to_a_new_client_records_no_sync_for_it(world: SyncWorld) -> None:
    world.connect(last_error="Sync failed: earlier trouble")
    world.ticket("change_request", "-1", "2025-03-01 11:30:00")
    lose_after_request(world, 2, lambda row: {"client_id": "new-client", "last_error": None})

    await world.sync()

    row = world.row()
    assert row.watermarks["change_request"] == "2025-03-01 11:30:00"  # the same instance: still true
    assert row.last_sync_at is None  # but the new client has not synced yet
    assert row.last_sync_started_at is None
    assert row.sync_lease_until is None


async def test_a_success_write_that_loses_to_another_worker_leaves_its_lease(world: SyncWorld) -> None:
    world.connect()
    world.ticket("change_request", "-1", "2025-03-01 11:30:00")
    lose_after_request(world, 2, another_worker_took_the_lease)

    await world.sync()

    row = world.row()
    assert row.sync_lease_until == THEIR_LEASE
    assert row.last_sync_at == NOW  # this run's success is still recorded
    assert row.watermarks["change_request"] == "2025-03-01 11:30:00"


# --- the watermark checkpoint ----------------------------------------------------------------------------


async def test_a_checkpoint_that_loses_to_a_reconfiguration_is_not_written(world: SyncWorld) -> None:
    world.connect()
    ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", ticket), state="2", sys_updated_on="2025-03-01 11:20:00"
    )
    lose_after_request(world, 1, reconfigured)  # the next write of the row saves incident's watermark

    await world.sync()

    assert world.tickets.state(TENANT, ticket) == "2"
    assert world.row().watermarks == {}
