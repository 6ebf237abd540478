"""The sync's writes without reads: ticket rows found by the record's correlation id and merged 50
to a transaction (each with its timeline event: 100 operations), the lease taken with the row the timer's message carries, the status written
with the lease write's ETag; and what happens when any of that meets a row it did not expect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import UpstreamUnavailable
from shared.models import ConnectionStatus, SyncRequest
from shared.records import Connection, new_ticket_id
from shared.services.sync_run import SyncOutcome
from tests.fakes.sync_world import NOW, TENANT, SyncWorld

LATER = "2025-03-01 11:30:00"  # after the watermark W (11:00)


@pytest.fixture
def world() -> SyncWorld:
    world = SyncWorld.create()
    world.connect()
    return world


def changed(world: SyncWorld, table: str, state: str, at: str = LATER) -> str:
    """A ticket of ours whose record moved to `state` since the last run; its ticket id."""
    ticket_id = world.ticket(table, "1", "2025-03-01 10:00:00")  # type: ignore[arg-type]
    world.servicenow.set(table, world.sys_id(table, ticket_id), state=state, sys_updated_on=at)
    return ticket_id


async def timer_run(world: SyncWorld, **config: object) -> SyncOutcome:
    """The timer's message for the tenant (the row goes with it), run by the worker."""
    world.connections.requests.clear()
    world.tickets.requests.clear()
    outcome = await world.service(**config).sync_tenant(world.timer_request())
    world.clock.advance(minutes=5)
    return outcome


# --- rows addressed by correlation id ------------------------------------------------------------


async def test_a_normal_run_writes_its_changes_without_reading_a_row(world: SyncWorld) -> None:
    incidents = [changed(world, "incident", "2") for _ in range(60)]
    changes = [changed(world, "change_request", "-1") for _ in range(40)]

    outcome = await timer_run(world)

    assert outcome.skipped is None
    assert outcome.changed == 100
    assert [t.changed for t in outcome.tables] == [60, 40]
    assert all(world.tickets.state(TENANT, t) == "2" for t in incidents)
    assert all(world.tickets.state(TENANT, t) == "-1" for t in changes)
    # Both tables' changes in two transactions of 50 rows and their events; the connection row: the
    # lease and the finish.
    assert world.tickets.requests == ["merge", "merge"]
    assert world.connections.requests == ["write", "write"]
    assert world.tickets.index_reads == 0
    row = world.row()
    assert (row.watermarks["incident"], row.last_sync_at, row.sync_lease_until) == (LATER, NOW, None)


async def test_changes_go_in_transactions_of_at_most_50_and_the_newest_version_wins(
    world: SyncWorld,
) -> None:
    tickets = [
        changed(world, "incident", "2", f"2025-03-01 11:{n // 60:02d}:{n % 60:02d}") for n in range(250)
    ]
    first = tickets[0]

    def moves_after_its_page(requests: int) -> None:
        # Read on the first page, and again on the last one in a newer version (it moved meanwhile).
        if requests == 2:
            sys_id = world.sys_id("incident", first)
            world.servicenow.set("incident", sys_id, state="6", sys_updated_on="2025-03-01 11:59:00")

    world.servicenow.between_requests.append(moves_after_its_page)

    outcome = await timer_run(world, page_size=100, max_page_size=100)

    assert world.tickets.requests == ["merge"] * 6
    assert [len(batch) for batch in world.tickets.writes] == [50, 50, 50, 50, 50, 1]
    assert world.tickets.state(TENANT, first) == "6"
    assert all(world.tickets.state(TENANT, t) == "2" for t in tickets[1:])
    assert outcome.changed == 251  # the first ticket twice: its first version, then its newest


async def test_a_correlation_id_not_of_our_shape_costs_nothing(world: SyncWorld) -> None:
    world.servicenow.add("incident", "INC-FROM-ELSEWHERE", "2", LATER)
    world.servicenow.add("incident", "", "2", LATER)

    await timer_run(world)

    assert world.tickets.requests == []
    assert world.row().watermarks["incident"] == LATER


# --- a record whose correlation id names no row of ours -----------------------------------------------


async def test_a_record_whose_row_does_not_exist_fails_its_transaction_and_the_run_goes_on_exactly(
    world: SyncWorld,
) -> None:
    ours = [changed(world, "incident", "2") for _ in range(3)]
    # Another tenant on the same instance: our display name, an id of our shape, no row of ours.
    theirs = new_ticket_id(NOW)
    world.servicenow.add("incident", theirs, "6", LATER)
    noted = world.ticket("change_request", "-5", "2025-03-01 10:00:00")
    world.servicenow.set("change_request", world.sys_id("change_request", noted), sys_updated_on=LATER)

    outcome = await timer_run(world)

    # The transaction wrote nothing; the index was read once and the rest decided on it.
    assert world.tickets.requests == ["merge", "index", "apply"]
    assert all(world.tickets.state(TENANT, t) == "2" for t in ours)
    assert (TENANT, theirs) not in world.tickets.rows  # never made
    assert sorted(c.ticket_id for batch in world.tickets.writes for c in batch) == sorted(ours)
    assert outcome.changed == 3
    assert world.row().watermarks["incident"] == LATER


async def test_a_row_deleted_from_our_table_is_not_brought_back(world: SyncWorld) -> None:
    gone = changed(world, "incident", "2")
    del world.tickets.rows[(TENANT, gone)]

    await timer_run(world)

    assert (TENANT, gone) not in world.tickets.rows
    assert world.tickets.writes == []
    assert world.row().last_error is None


async def test_a_copy_of_our_record_with_our_correlation_id_is_not_written_over_our_row(
    world: SyncWorld,
) -> None:
    ticket_id = changed(world, "incident", "2")
    # Someone copied the record, correlation id and all (in the other table, too).
    world.servicenow.add("incident", ticket_id, "7", "2025-03-01 11:40:00")
    world.servicenow.add("change_request", ticket_id, "-1", "2025-03-01 11:41:00")

    await timer_run(world)

    assert world.tickets.state(TENANT, ticket_id) == "2"
    assert world.tickets.requests == ["index", "apply"]


# --- a batch failing ------------------------------------------------------------------------------


async def test_a_failed_transaction_moves_no_watermark_and_the_retry_writes_everything(
    world: SyncWorld,
) -> None:
    tickets = [changed(world, "incident", "2", f"2025-03-01 11:{n:02d}:00") for n in range(30)]
    world.tickets.fail_writes = True

    with pytest.raises(UpstreamUnavailable):
        await timer_run(world)

    failed = world.row()
    assert failed.watermarks["incident"] == "2025-03-01 11:00:00"
    assert failed.sync_lease_until is None
    assert "Table Storage is unavailable" in (failed.last_error or "")
    assert world.tickets.requests == ["merge"]  # not tried again on the way out

    world.tickets.fail_writes = False
    await timer_run(world)
    assert all(world.tickets.state(TENANT, t) == "2" for t in tickets)
    assert world.row().watermarks["incident"] == "2025-03-01 11:29:00"
    assert world.row().last_error is None


async def test_a_later_tables_failure_writes_the_earlier_tables_rows_and_saves_its_watermark(
    world: SyncWorld,
) -> None:
    ticket_id = changed(world, "incident", "2")
    world.servicenow.fail["change_request"] = UpstreamUnavailable("ServiceNow did not answer.")

    with pytest.raises(UpstreamUnavailable):
        await timer_run(world)

    assert world.tickets.state(TENANT, ticket_id) == "2"
    row = world.row()
    assert row.watermarks["incident"] == LATER
    assert row.watermarks["change_request"] == "2025-03-01 11:00:00"
    assert world.connections.requests == ["write", "write"]  # the lease, then the failure with the mark


# --- the lease from the listed row, and rival writes -------------------------------------------------


async def test_a_listed_row_that_changed_since_is_read_and_decided_again(world: SyncWorld) -> None:
    request = world.timer_request()
    # Written after the listing (a token refresh, say): the listed row's ETag no longer matches.
    world.connections.rows[TENANT] = world.row().model_copy(
        update={"access_token_expires_at": NOW + timedelta(hours=1)}
    )

    outcome = await world.service().sync_tenant(request)

    assert outcome.skipped is None
    assert world.connections.requests == ["write", "read", "write", "write"]
    row = world.row()
    assert row.access_token_expires_at == NOW + timedelta(hours=1)  # the rival's write is kept
    assert row.last_sync_at == NOW


async def test_a_lease_taken_by_a_rival_after_the_listing_stops_the_run(world: SyncWorld) -> None:
    request = world.timer_request()
    world.connections.rows[TENANT] = world.row().model_copy(
        update={"sync_lease_until": NOW + timedelta(minutes=20)}
    )

    outcome = await world.service().sync_tenant(request)

    assert outcome.skipped == "another sync of this tenant is running"
    assert world.servicenow.requests == []
    assert world.row().sync_lease_until == NOW + timedelta(minutes=20)


async def test_a_refusal_decided_on_the_listed_row_is_decided_again_on_the_row(world: SyncWorld) -> None:
    world.connect(sync_lease_until=NOW + timedelta(minutes=3))  # running when the timer listed it
    request = world.timer_request()
    world.connect(sync_lease_until=None, last_sync_started_at=NOW - timedelta(minutes=7))  # done since

    outcome = await world.service().sync_tenant(request)

    assert outcome.skipped is None
    assert world.connections.requests[:2] == ["read", "write"]


async def test_a_finish_that_loses_to_a_rival_write_is_decided_on_the_row_that_won(world: SyncWorld) -> None:
    changed(world, "incident", "2")

    def grant_dies(requests: int) -> None:
        world.connections.rows[TENANT] = world.row().model_copy(
            update={"status": ConnectionStatus.REAUTHORIZATION_REQUIRED, "last_error": "access_denied"}
        )

    world.servicenow.between_requests.append(grant_dies)
    await timer_run(world)

    row = world.row()
    assert (row.status, row.last_error, row.sync_lease_until) == (
        ConnectionStatus.REAUTHORIZATION_REQUIRED,
        "access_denied",
        None,
    )
    assert row.watermarks["incident"] == LATER
    assert world.connections.requests == ["write", "write", "read", "write"]


async def test_a_message_without_a_row_or_with_another_tenants_reads_the_row(world: SyncWorld) -> None:
    await world.service().sync_tenant(world.request())  # as `POST /api/sync` and older messages
    assert world.connections.requests[:2] == ["read", "write"]

    other = "22222222-2222-2222-2222-222222222222"
    world.connect(other)
    world.connections.requests.clear()
    world.clock.advance(minutes=5)
    crossed = world.timer_request(other).model_copy(update={"tenant_id": TENANT})
    await world.service().sync_tenant(crossed)
    assert world.connections.requests[:2] == ["read", "write"]
    assert world.row(other).sync_lease_until is None


async def test_an_old_message_without_the_row_still_parses_and_runs(world: SyncWorld) -> None:
    body = f'{{"tenantId": "{TENANT}", "reason": "timer", "requestedAt": "2025-03-01T12:00:00Z"}}'
    request = SyncRequest.model_validate_json(body)
    assert request.row is None
    assert (await world.service().sync_tenant(request)).skipped is None


async def test_a_request_put_back_for_after_the_running_sync_goes_without_the_row(world: SyncWorld) -> None:
    world.connect(sync_lease_until=NOW + timedelta(minutes=9))  # started a minute ago
    outcome = await world.service().sync_tenant(world.timer_request())

    assert outcome.skipped == "another sync of this tenant is running; asked again for after it"
    [body] = world.queue.bodies
    assert SyncRequest.model_validate_json(body).row is None


def test_the_listed_row_holds_the_connection_as_stored_and_no_secret(world: SyncWorld) -> None:
    request = world.timer_request()
    assert request.row is not None
    assert set(request.row.properties) <= {
        field.alias or name for name, field in Connection.model_fields.items()
    }
    assert not [name for name, field in Connection.model_fields.items() if "Secret" in str(field.annotation)]
    assert (
        Connection.model_validate(request.row.properties).model_copy(update={"etag": request.row.etag})
        == world.row()
    )


# --- what the blind write gives up ------------------------------------------------------------------


async def test_a_record_the_run_cannot_compare_is_written_with_its_state_unchanged(world: SyncWorld) -> None:
    noted = world.ticket("incident", "2", "2025-03-01 10:00:00")
    world.servicenow.set("incident", world.sys_id("incident", noted), sys_updated_on=LATER)  # a work note

    await timer_run(world)

    row = world.tickets.rows[(TENANT, noted)]
    assert row.state == "2"
    assert row.state_updated_at == datetime(2025, 3, 1, 11, 30, tzinfo=UTC)
    assert world.tickets.index_reads == 0

    world.servicenow.set("incident", world.sys_id("incident", noted), sys_updated_on="2025-03-01 11:31:00")
    await world.sync(reconcile_every=timedelta(0))  # the reconciliation compares: no write
    assert world.tickets.rows[(TENANT, noted)].state_updated_at == datetime(2025, 3, 1, 11, 30, tzinfo=UTC)
