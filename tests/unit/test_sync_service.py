"""The sync's policy with fakes of its ports (no I/O): what ends up in our rows and on the
connection, and how many ServiceNow requests it took."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import (
    ConnectionNotReady,
    ReauthorizationRequired,
    TokenRefused,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.models import ConnectionStatus, SyncRequest
from shared.records import CORRELATION_DISPLAY, Connection, OAuthState, new_ticket_id
from tests.fakes.sync_world import NOW, TENANT, W_LOOKED_BACK, SyncWorld, W


@pytest.fixture
def world() -> SyncWorld:
    return SyncWorld.create()


def request_bound(tables: int, changed: int, page_size: int = 1000) -> int:
    """The most ServiceNow requests a normal (not reconciling) sync may make."""
    return tables + math.ceil(changed / page_size)


def table_requests(world: SyncWorld, table: str) -> list[str]:
    return [query for name, query in world.servicenow.requests if name == table]


# --- pulling changes ----------------------------------------------------------------------------------


async def test_changes_of_both_tables_are_applied_and_the_watermarks_move_to_the_newest(
    world: SyncWorld,
) -> None:
    world.connect(last_error="Sync failed: earlier trouble")
    incident = world.ticket("incident", "1", "2025-03-01 10:00:00")  # before the watermark: not asked for
    change = world.ticket("change_request", "-5", "2025-03-01 10:30:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", incident), state="2", sys_updated_on="2025-03-01 11:05:00"
    )
    world.servicenow.set(
        "change_request",
        world.sys_id("change_request", change),
        state="-1",
        sys_updated_on="2025-03-01 11:07:09",
    )

    outcome = await world.sync()

    assert outcome.skipped is None
    assert world.tickets.state(TENANT, incident) == "2"
    assert world.tickets.state(TENANT, change) == "-1"
    saved = world.row()
    assert saved.watermarks["incident"] == "2025-03-01 11:05:00"
    assert saved.watermarks["change_request"] == "2025-03-01 11:07:09"
    assert saved.last_sync_at == NOW
    assert saved.last_error is None
    assert saved.sync_lease_until is None
    [change_written] = [c for batch in world.tickets.writes for c in batch if c.ticket_id == change]
    assert change_written.state_updated_at == datetime(2025, 3, 1, 11, 7, 9, tzinfo=UTC)
    assert change_written.servicenow_updated_on == "2025-03-01 11:07:09"


async def test_a_normal_run_makes_one_request_per_table_and_only_asks_for_this_connectors_changes(
    world: SyncWorld,
) -> None:
    world.connect()
    for n in range(30):
        world.ticket("incident", "1", f"2025-03-01 10:{n:02d}:00")
    world.servicenow.add("incident", "someone-elses", "2", "2025-03-01 11:30:00", correlation_display="Other")

    await world.sync()

    assert len(world.servicenow.requests) == 2  # one per table
    for _, query in world.servicenow.requests:
        assert query.startswith(f"correlation_display={CORRELATION_DISPLAY}^sys_updated_on>={W_LOOKED_BACK}^")
        assert query.endswith("^ORDERBYsys_updated_on^ORDERBYsys_id")
    assert world.tickets.writes == []
    assert world.tickets.index_reads == 0  # nothing changed: our rows were not even read


async def test_an_update_in_the_same_second_as_the_watermark_is_not_missed(world: SyncWorld) -> None:
    world.connect()
    first = world.ticket("incident", "1", "2025-03-01 10:00:00")
    second = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", first), state="2", sys_updated_on="2025-03-01 11:10:10"
    )
    await world.sync()
    assert world.row().watermarks["incident"] == "2025-03-01 11:10:10"

    # Later in that same second (after our query), the same record moves again and another changes.
    world.servicenow.set("incident", world.sys_id("incident", first), state="6")
    world.servicenow.set(
        "incident", world.sys_id("incident", second), state="3", sys_updated_on="2025-03-01 11:10:10"
    )
    await world.sync()

    assert world.tickets.state(TENANT, first) == "6"
    assert world.tickets.state(TENANT, second) == "3"

    # Nothing new: the records of the watermark's second come back (>=) but are not written again.
    writes = len(world.tickets.writes)
    reads = world.tickets.index_reads
    await world.sync()
    assert len(world.tickets.writes) == writes
    assert world.tickets.index_reads == reads


async def test_paging_reads_every_page_and_stays_within_the_request_bound(world: SyncWorld) -> None:
    world.connect()
    tickets = [world.ticket("incident", "1", "2025-03-01 10:00:00") for _ in range(12)]
    for n, ticket in enumerate(tickets):
        world.servicenow.set(
            "incident",
            world.sys_id("incident", ticket),
            state="2",
            sys_updated_on=f"2025-03-01 11:20:{n:02d}",
        )

    outcome = await world.sync(page_size=5)

    assert all(world.tickets.state(TENANT, t) == "2" for t in tickets)
    assert outcome.tables[0].pages == 3
    assert len(world.servicenow.requests) <= request_bound(tables=2, changed=12, page_size=5)
    assert world.row().watermarks["incident"] == "2025-03-01 11:20:11"


async def test_only_state_changes_are_written_and_other_tenants_records_are_ignored(world: SyncWorld) -> None:
    world.connect()
    noted = world.ticket("incident", "2", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", noted), sys_updated_on="2025-03-01 11:30:00"
    )  # a work note
    # The same instance serves another tenant: its tickets carry our display name but not our ids.
    world.servicenow.add("incident", new_ticket_id(NOW), "6", "2025-03-01 11:31:00")

    await world.sync()

    assert world.tickets.writes == []
    assert world.row().watermarks["incident"] == "2025-03-01 11:31:00"


async def test_the_watermark_does_not_move_when_writing_the_rows_fails(world: SyncWorld) -> None:
    world.connect()
    ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", ticket), state="6", sys_updated_on="2025-03-01 11:40:00"
    )
    world.tickets.fail_writes = True

    with pytest.raises(UpstreamUnavailable):
        await world.sync()

    failed = world.row()
    assert failed.watermarks["incident"] == W
    assert failed.last_error is not None
    assert "Table Storage is unavailable" in failed.last_error
    assert failed.last_sync_at is None
    assert failed.sync_lease_until is None  # the retry may start at once

    world.tickets.fail_writes = False
    states_when_the_watermark_moved: list[str] = []

    def watermark_written(row: Connection) -> None:
        if row.watermarks.get("incident") == "2025-03-01 11:40:00" and not states_when_the_watermark_moved:
            states_when_the_watermark_moved.append(world.tickets.state(TENANT, ticket))

    world.connections.watchers.append(watermark_written)
    await world.sync()
    assert world.tickets.state(TENANT, ticket) == "6"
    assert world.row().watermarks["incident"] == "2025-03-01 11:40:00"
    assert world.row().last_error is None
    # Rows first, watermark after: the watermark moves past the change only once it is written.
    assert states_when_the_watermark_moved == ["6"]


# --- tokens and status --------------------------------------------------------------------------------


async def test_a_dead_grant_ends_the_sync_quietly_and_later_runs_skip_the_tenant(world: SyncWorld) -> None:
    world.connect()
    world.connect("22222222-2222-2222-2222-222222222222")
    world.tokens.fail = ReauthorizationRequired()

    outcome = await world.sync()  # no exception: retrying the message cannot help

    assert outcome.skipped == "reauthorization required"
    assert world.row().status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert world.row().sync_lease_until is None
    assert world.servicenow.requests == []

    world.tokens.fail = None
    queued = await world.service().enqueue_connected("timer")
    assert queued == 1
    assert [json.loads(b)["tenantId"] for b in world.queue.bodies] == ["22222222-2222-2222-2222-222222222222"]
    calls = len(world.tokens.calls)
    skipped = await world.sync()  # a message that was already queued
    assert skipped.skipped == "the connection is reauthorization_required"
    assert len(world.tokens.calls) == calls


async def test_a_transient_failure_raises_and_is_recorded(world: SyncWorld) -> None:
    world.connect()
    world.tokens.fail = UpstreamUnavailable("ServiceNow did not answer (refresh).")

    with pytest.raises(UpstreamUnavailable):
        await world.sync()

    assert world.row().last_error == "Sync failed: ServiceNow did not answer (refresh)."
    assert world.row().status == ConnectionStatus.CONNECTED


async def test_connected_without_tokens_needs_reauthorization(world: SyncWorld) -> None:
    world.connect()
    world.tokens.fail = ConnectionNotReady("ServiceNow has not been authorized for this tenant yet.")

    outcome = await world.sync()

    assert outcome.skipped == "reauthorization required"
    assert world.row().status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert world.row().last_error


async def test_the_token_is_refreshed_with_a_ten_minute_margin(world: SyncWorld) -> None:
    world.connect()
    await world.sync()
    assert world.tokens.calls == [timedelta(minutes=10)]


# --- one worker per tenant ------------------------------------------------------------------------------


async def test_a_second_message_while_a_sync_runs_and_a_stale_message_are_dropped(world: SyncWorld) -> None:
    world.connect(sync_lease_until=NOW + timedelta(minutes=3))  # a run that started 7 minutes ago
    busy = await world.service().sync_tenant(world.request(at=NOW - timedelta(minutes=8)))
    assert busy.skipped == "another sync of this tenant is running"
    assert world.tokens.calls == []
    assert world.queue.bodies == []  # that run covers a request made before it started

    # A run that started (and so queried ServiceNow) after the request was made covers it.
    world.connect(last_sync_started_at=NOW + timedelta(seconds=1), last_sync_at=NOW + timedelta(minutes=1))
    stale = await world.service().sync_tenant(world.request())
    assert stale.skipped == "the tenant was synced after this request was made"

    world.connect(sync_lease_until=NOW - timedelta(seconds=1))  # an expired lease (a crashed worker)
    assert (await world.service().sync_tenant(world.request())).skipped is None


async def test_an_unknown_tenant_is_skipped(world: SyncWorld) -> None:
    outcome = await world.service().sync_tenant(world.request())
    assert outcome.skipped == "not configured"


# --- deletions -----------------------------------------------------------------------------------


async def test_reconciliation_marks_deleted_records_and_repairs_missed_states(world: SyncWorld) -> None:
    world.connect(last_reconciled_at=NOW - timedelta(days=2))
    kept = world.ticket("incident", "1", "2025-03-01 10:00:00")
    gone = world.ticket("incident", "2", "2025-03-01 10:00:00")
    drifted = world.ticket("change_request", "-5", "2025-03-01 10:00:00")
    uncorrelated = world.ticket("change_request", "-5", "2025-03-01 10:00:00")
    del world.servicenow.tables["incident"][world.sys_id("incident", gone)]
    # A change a normal run could not see (its time is before the watermark), and a record whose
    # correlation an admin cleared: it still exists, so it must not be called deleted.
    world.servicenow.set("change_request", world.sys_id("change_request", drifted), state="3")
    world.servicenow.set(
        "change_request", world.sys_id("change_request", uncorrelated), correlation_display=""
    )

    outcome = await world.sync()

    assert set(world.tickets.deleted) == {gone}
    assert world.tickets.state(TENANT, drifted) == "3"
    assert world.tickets.state(TENANT, kept) == "1"
    assert sum(t.deleted for t in outcome.tables) == 1
    assert world.row().last_reconciled_at == NOW

    # The next run is a normal one again: no listing, nothing deleted twice.
    world.servicenow.requests.clear()
    await world.sync()
    assert all("sys_updated_on>=" in query for _, query in world.servicenow.requests)
    assert set(world.tickets.deleted) == {gone}


async def test_a_ticket_younger_than_the_grace_period_is_not_judged(world: SyncWorld) -> None:
    world.connect(last_reconciled_at=None)
    ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.tickets.rows[(TENANT, ticket)] = world.tickets.rows[(TENANT, ticket)].model_copy(
        update={"created_at": NOW}
    )
    del world.servicenow.tables["incident"][world.sys_id("incident", ticket)]

    await world.sync()

    assert world.tickets.deleted == {}


# --- fan-out and manual sync ---------------------------------------------------------------------------


async def test_the_timer_queues_one_message_per_connected_tenant(world: SyncWorld) -> None:
    tenants = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(70)]
    for tenant in tenants:
        world.connect(tenant)
    world.connect("99999999-0000-0000-0000-000000000000", status=ConnectionStatus.PENDING_AUTHORIZATION)

    assert await world.service().enqueue_connected("timer") == 70

    messages = [SyncRequest.model_validate_json(body) for body in world.queue.bodies]
    assert sorted(m.tenant_id for m in messages) == tenants
    assert {m.reason for m in messages} == {"timer"}
    body = json.loads(world.queue.bodies[0])
    assert body.keys() == {"tenantId", "reason", "requestedAt", "row"}
    # The row as listed, with its ETag: the worker takes its lease without reading it first.
    listed = world.row(body["tenantId"])
    assert body["row"]["etag"] == listed.etag
    assert Connection.model_validate(body["row"]["properties"]) == listed.model_copy(update={"etag": None})


async def test_a_manual_sync_needs_a_connected_tenant(world: SyncWorld) -> None:
    with pytest.raises(ConnectionNotReady):
        await world.service().request_sync(TENANT)
    world.connect(status=ConnectionStatus.REAUTHORIZATION_REQUIRED)
    with pytest.raises(ReauthorizationRequired):
        await world.service().request_sync(TENANT)
    assert world.queue.bodies == []

    world.connect()
    queued = await world.service().request_sync(TENANT)
    [message] = [SyncRequest.model_validate_json(body) for body in world.queue.bodies]
    assert (message.tenant_id, message.reason, message.requested_at) == (
        TENANT,
        "manual",
        queued.requested_at,
    )


# --- keyset paging (a record that moves while the pages are read) ---------------------------------------


async def test_a_record_updated_while_the_pages_are_read_does_not_push_another_out_of_view(
    world: SyncWorld,
) -> None:
    world.connect()
    tickets = [world.ticket("incident", "1", "2025-03-01 10:00:00") for _ in range(10)]
    for n, ticket in enumerate(tickets):
        world.servicenow.set(
            "incident",
            world.sys_id("incident", ticket),
            state="2",
            sys_updated_on=f"2025-03-01 11:20:{n:02d}",
        )

    def fulfiller_moves_the_first(request_count: int) -> None:
        # Right after the first page: its first record changes again and sorts last now. Paged by
        # offset, the second page would start one record too far and never show tickets[5].
        if request_count == 1:
            world.servicenow.set(
                "incident",
                world.sys_id("incident", tickets[0]),
                state="6",
                sys_updated_on="2025-03-01 11:30:00",
            )

    world.servicenow.between_requests.append(fulfiller_moves_the_first)
    await world.sync(page_size=5)

    assert [world.tickets.state(TENANT, t) for t in tickets] == ["6"] + ["2"] * 9
    assert world.row().watermarks["incident"] == "2025-03-01 11:30:00"
    incident_queries = [query for table, query in world.servicenow.requests if table == "incident"]
    assert incident_queries[1].startswith(
        f"correlation_display={CORRELATION_DISPLAY}^sys_updated_on>=2025-03-01 11:20:04^"
    )  # the next page starts at the newest time of the page before, not at an offset
    assert all(q.endswith("^ORDERBYsys_updated_on^ORDERBYsys_id") for q in incident_queries)
    assert len(world.servicenow.requests) <= request_bound(tables=2, changed=11, page_size=5)


async def test_a_second_holding_more_than_a_page_is_read_on_by_sys_id_and_then_left_behind(
    world: SyncWorld,
) -> None:
    world.connect()
    bulk = [world.ticket("incident", "1", "2025-03-01 10:00:00") for _ in range(12)]
    for ticket in bulk:  # one bulk update: twelve records in one second
        world.servicenow.set(
            "incident", world.sys_id("incident", ticket), state="2", sys_updated_on="2025-03-01 11:20:00"
        )
    later = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", later), state="3", sys_updated_on="2025-03-01 11:20:01"
    )

    outcome = await world.sync(page_size=5, max_page_size=5)  # no room to widen a page: 5 at most

    assert all(world.tickets.state(TENANT, t) == "2" for t in bulk)
    assert world.tickets.state(TENANT, later) == "3"
    assert world.row().watermarks["incident"] == "2025-03-01 11:20:01"
    queries = [query for table, query in world.servicenow.requests if table == "incident"]
    assert "sys_updated_on=2025-03-01 11:20:00^sys_id>" in queries[1]
    assert "sys_updated_on>2025-03-01 11:20:00^" in queries[-1]
    assert outcome.tables[0].pages == len(queries) == 4  # 5 + 5 + 2 in the second, then 1 after it


async def test_an_instance_that_ignores_the_sys_id_bound_fails_the_run_instead_of_looping(
    world: SyncWorld,
) -> None:
    world.connect()
    for _ in range(6):
        ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")
        world.servicenow.set(
            "incident", world.sys_id("incident", ticket), state="2", sys_updated_on="2025-03-01 11:20:00"
        )
    world.servicenow.ignore_sys_id_after = True

    outcome = await world.sync(page_size=5, max_page_size=5)

    # Stopped, recorded, and not retried in seconds (a poison loop): the next scheduled run tries again.
    assert outcome.skipped == "rejected by ServiceNow"
    assert len(world.servicenow.requests) == 2
    assert world.row().watermarks["incident"] == W
    assert "did not page incident on" in (world.row().last_error or "")


async def test_a_boundary_second_comes_back_once_and_is_not_applied_twice(world: SyncWorld) -> None:
    world.connect()
    tickets = [world.ticket("incident", "1", "2025-03-01 10:00:00") for _ in range(8)]
    for n, ticket in enumerate(tickets):  # 3 records per second: pages end inside a second
        world.servicenow.set(
            "incident",
            world.sys_id("incident", ticket),
            state="2",
            sys_updated_on=f"2025-03-01 11:20:0{n // 3}",
        )

    outcome = await world.sync(page_size=4)

    written = [change.ticket_id for batch in world.tickets.writes for change in batch]
    assert sorted(written) == sorted(tickets)  # each once
    assert outcome.tables[0].records == 8
    assert len(world.servicenow.requests) <= request_bound(tables=2, changed=8, page_size=4)


# --- look-back (records committed late) -------------------------------------------------------------------


async def test_a_record_committed_late_with_an_older_time_is_seen_by_the_next_run(world: SyncWorld) -> None:
    world.connect()
    early = world.ticket("incident", "1", "2025-03-01 10:00:00")
    late = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", early), state="2", sys_updated_on="2025-03-01 11:05:00"
    )
    await world.sync()
    assert world.row().watermarks["incident"] == "2025-03-01 11:05:00"

    # A transaction that began before our read commits after it: its time is older than the watermark.
    world.servicenow.set(
        "incident", world.sys_id("incident", late), state="6", sys_updated_on="2025-03-01 11:04:10"
    )
    await world.sync()

    assert world.tickets.state(TENANT, late) == "6"
    assert world.row().watermarks["incident"] == "2025-03-01 11:05:00"


async def test_records_of_the_look_back_window_already_handled_cost_no_read_of_our_rows(
    world: SyncWorld,
) -> None:
    world.connect()
    tickets = [world.ticket("incident", "1", "2025-03-01 10:00:00") for _ in range(3)]
    for n, ticket in enumerate(tickets):
        world.servicenow.set(
            "incident",
            world.sys_id("incident", ticket),
            state="2",
            sys_updated_on=f"2025-03-01 11:0{3 + n}:00",
        )
    world.ticket("incident", "1", "2025-03-01 11:04:30")  # in the window, never changed: not ours to write
    await world.sync()
    reads, writes = world.tickets.index_reads, len(world.tickets.writes)

    await world.sync()  # nothing new: the window (11:03-11:05) comes back but was handled
    await world.sync()

    assert world.tickets.index_reads == reads
    assert len(world.tickets.writes) == writes
    seen = world.row().watermarks["incident@seen"]
    assert seen.count(",") == 3  # four records in the window, each with its time below the watermark


async def test_a_seen_set_stored_before_the_look_back_still_means_the_watermarks_second(
    world: SyncWorld,
) -> None:
    world.connect()
    done = world.ticket("incident", "2", W)
    moved = world.ticket("incident", "1", W)
    world.servicenow.set("incident", world.sys_id("incident", moved), state="6")  # later in that second
    old_format = f"{world.sys_id('incident', done)}=2,{world.sys_id('incident', moved)}=1"
    world.connect(watermarks={"incident": W, "incident@seen": old_format, "change_request": W})

    await world.sync()

    assert [c.ticket_id for batch in world.tickets.writes for c in batch] == [moved]
    assert world.tickets.state(TENANT, moved) == "6"


# --- failures retrying cannot fix, and Retry-After ---------------------------------------------------------


@pytest.mark.parametrize(
    "refusal",
    [
        UpstreamRejected("ServiceNow refused to query change_request (HTTP 403): ACL."),
        TokenRefused("ServiceNow refused a freshly refreshed access token (query change_request)."),
    ],
)
async def test_a_refusal_is_recorded_and_the_message_consumed_and_the_next_timer_run_tries_again(
    world: SyncWorld, refusal: Exception
) -> None:
    world.connect()
    ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", ticket), state="2", sys_updated_on="2025-03-01 11:10:00"
    )
    world.servicenow.fail["change_request"] = refusal

    outcome = await world.sync()  # no exception: the host would only retry it 5 times and poison it

    assert outcome.skipped == "rejected by ServiceNow"
    failed = world.row()
    assert failed.last_error == f"Sync failed: {refusal}"
    assert failed.status == ConnectionStatus.CONNECTED
    assert failed.sync_lease_until is None
    assert failed.sync_not_before is None
    assert failed.last_sync_at is None
    assert world.tickets.state(TENANT, ticket) == "2"  # the table before it was synced and checkpointed
    assert failed.watermarks["incident"] == "2025-03-01 11:10:00"

    assert await world.service().enqueue_connected("timer") == 1  # one attempt per schedule
    del world.servicenow.fail["change_request"]
    assert (await world.sync()).skipped is None
    assert world.row().last_error is None


async def test_a_long_retry_after_pauses_the_tenant_until_then(world: SyncWorld) -> None:
    world.connect()
    world.connect("22222222-2222-2222-2222-222222222222")
    world.servicenow.fail["incident"] = UpstreamUnavailable(
        "ServiceNow is unavailable or rate limiting us (query incident: HTTP 429).",
        retry_after=3600,
        hinted=True,
    )

    outcome = await world.service().sync_tenant(world.request())  # no exception, no host retries

    assert outcome.skipped == "deferred by ServiceNow"
    assert outcome.not_before == NOW + timedelta(hours=1)
    paused = world.row()
    assert paused.sync_not_before == NOW + timedelta(hours=1)
    assert paused.last_error is not None
    assert "rate limiting" in paused.last_error
    assert paused.sync_lease_until is None
    del world.servicenow.fail["incident"]

    world.clock.advance(minutes=5)
    assert await world.service().enqueue_connected("timer") == 1  # only the other tenant
    assert [json.loads(b)["tenantId"] for b in world.queue.bodies] == ["22222222-2222-2222-2222-222222222222"]
    requests = len(world.servicenow.requests)
    dropped = await world.service().sync_tenant(world.request())  # a message queued before the pause
    assert dropped.skipped is not None
    assert "wait until" in dropped.skipped
    assert len(world.servicenow.requests) == requests

    world.clock.advance(hours=1)
    assert await world.service().enqueue_connected("timer") == 2
    assert (await world.service().sync_tenant(world.request())).skipped is None
    assert world.row().sync_not_before is None
    assert world.row().last_error is None


async def test_a_short_retry_after_is_left_to_the_hosts_retries(world: SyncWorld) -> None:
    world.connect()
    world.servicenow.fail["incident"] = UpstreamUnavailable(
        "ServiceNow is unavailable or rate limiting us (query incident: HTTP 429).",
        retry_after=20,
        hinted=True,
    )

    with pytest.raises(UpstreamUnavailable):
        await world.sync()

    assert world.row().sync_not_before is None
    assert world.row().last_error is not None
    assert world.row().sync_lease_until is None


# --- status writes never overwrite newer news ----------------------------------------------------------------


def _reauthorize(world: SyncWorld) -> None:
    """What the OAuth callback does when an admin re-authorizes: same row, a new grant."""
    world.connections.rows[TENANT] = world.row().model_copy(
        update={
            "status": ConnectionStatus.CONNECTED,
            "connected_at": world.clock.now() + timedelta(seconds=30),
            "last_error": None,
        }
    )


async def test_a_stale_failure_does_not_flip_a_connection_reauthorized_during_the_run(
    world: SyncWorld,
) -> None:
    world.connect(connected_at=NOW - timedelta(days=3))
    world.tokens.meanwhile.append(lambda: _reauthorize(world))
    world.tokens.fail = ConnectionNotReady("No ServiceNow client secret is stored for this tenant.")
    outcome = await world.sync()

    assert outcome.skipped == "reauthorization required"
    current = world.row()
    assert current.status == ConnectionStatus.CONNECTED
    assert current.last_error is None
    assert current.sync_lease_until is None  # the lease is still released

    world.tokens.meanwhile.clear()
    world.tokens.fail = None
    world.servicenow.fail["incident"] = UpstreamUnavailable("ServiceNow did not answer (query incident).")

    def reauthorize_on_request(request_count: int) -> None:
        _reauthorize(world)

    world.servicenow.between_requests.append(reauthorize_on_request)
    with pytest.raises(UpstreamUnavailable):
        await world.sync()
    assert world.row().last_error is None  # a failure of the old grant is not the new one's


async def test_a_success_keeps_the_error_of_a_grant_that_died_during_the_run(world: SyncWorld) -> None:
    world.connect()

    def grant_dies_meanwhile(request_count: int) -> None:
        # A ticket request of the same tenant found the grant dead (what AccessTokens records).
        world.connections.rows[TENANT] = world.row().model_copy(
            update={
                "status": ConnectionStatus.REAUTHORIZATION_REQUIRED,
                "last_error": "access_denied An admin must re-authorize the connection.",
            }
        )

    world.servicenow.between_requests.append(grant_dies_meanwhile)
    await world.sync()

    current = world.row()
    assert current.status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert current.last_error == "access_denied An admin must re-authorize the connection."
    assert current.sync_lease_until is None


async def test_a_run_whose_lease_was_taken_over_leaves_the_new_lease_alone(world: SyncWorld) -> None:
    world.connect()
    theirs = NOW + timedelta(minutes=20)

    def another_worker_takes_over(request_count: int) -> None:
        world.connections.rows[TENANT] = world.row().model_copy(update={"sync_lease_until": theirs})

    world.servicenow.between_requests.append(another_worker_takes_over)
    await world.sync()
    assert world.row().sync_lease_until == theirs

    world.servicenow.fail["incident"] = UpstreamUnavailable("ServiceNow did not answer (query incident).")
    world.connect(sync_lease_until=None)
    with pytest.raises(UpstreamUnavailable):
        await world.sync()
    assert world.row().sync_lease_until == theirs
    assert world.row().last_error is None  # the other worker's run is the newer news


# --- sync now during a run ------------------------------------------------------------------------------------


async def test_a_manual_request_made_during_a_run_is_not_dropped(world: SyncWorld) -> None:
    world.connect()
    ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")

    def slow_run(request_count: int) -> None:
        if request_count == 1:
            world.clock.advance(minutes=3)  # the run goes on (other tables, our rows) for a while

    world.servicenow.between_requests.append(slow_run)
    await world.service().sync_tenant(world.request())
    world.servicenow.between_requests.clear()
    first = world.row()

    # An admin changed the ticket and clicked "sync now" a minute into that run, after its query.
    world.servicenow.set(
        "incident", world.sys_id("incident", ticket), state="6", sys_updated_on="2025-03-01 11:11:00"
    )
    manual = await world.service().sync_tenant(world.request(reason="manual", at=NOW + timedelta(minutes=1)))

    assert manual.skipped is None
    assert world.tickets.state(TENANT, ticket) == "6"
    backlog = await world.service().sync_tenant(world.request(at=NOW - timedelta(seconds=1)))
    assert backlog.skipped == "the tenant was synced after this request was made"
    assert (first.last_sync_started_at, first.last_sync_at) == (NOW, NOW + timedelta(minutes=3))


# --- OAuth state housekeeping ----------------------------------------------------------------------------------


async def test_the_timer_deletes_oauth_states_expired_over_a_day_ago_in_bounded_runs(
    world: SyncWorld, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level("INFO")
    ages = [
        timedelta(days=3),
        timedelta(days=2),
        timedelta(hours=25),
        timedelta(hours=23),
        -timedelta(minutes=5),
    ]
    for n, age in enumerate(ages):
        world.states.rows[f"s{n}"] = OAuthState(
            state_id=f"s{n}",
            tenant_id=TENANT,
            user_id="u",
            user_name="Admin",
            instance_url="https://contoso.service-now.com",
            client_id="client",
            created_at=NOW - age - timedelta(minutes=10),
            expires_at=NOW - age,
        )

    assert await world.service(state_purge_limit=2).purge_expired_states() == 2
    assert "Deleted 2 OAuth state(s)" in caplog.text
    assert "the limit of one run" in caplog.text
    assert await world.service().purge_expired_states() == 1  # the next run goes on
    assert sorted(world.states.rows) == ["s3", "s4"]  # expired less than a day ago, and still valid

    async def unavailable(before: datetime, *, limit: int = 1000) -> int:
        raise UpstreamUnavailable("Table Storage is unavailable (list oauthstates).")

    monkeypatch.setattr(world.states, "delete_expired", unavailable)
    assert await world.service().purge_expired_states() == 0  # logged, never raised
    assert "Could not delete expired OAuth states" in caplog.text


async def test_the_reconciliation_reads_the_instances_own_state_labels(world: SyncWorld) -> None:
    world.connect(last_reconciled_at=NOW - timedelta(days=2))
    world.servicenow.add_choice("incident", "2", "Work in Progress")
    world.servicenow.add_choice("incident", "9", "Awaiting Vendor")  # a state this instance added
    world.servicenow.add_choice("problem", "1", "Not ours")
    await world.sync()
    assert world.row().instance_state_labels == {
        "incident": {"2": "Work in Progress", "9": "Awaiting Vendor"}
    }
    [query] = table_requests(world, "sys_choice")
    assert query.startswith("nameINincident,change_request^element=state")

    # Normal runs do not read them again; a failure to read them fails no sync.
    await world.sync()
    assert len(table_requests(world, "sys_choice")) == 1


async def test_unreadable_state_labels_keep_the_ones_stored(world: SyncWorld) -> None:
    world.connect(last_reconciled_at=None, instance_state_labels={"incident": {"2": "Working"}})
    world.servicenow.fail["sys_choice"] = UpstreamRejected(
        "ServiceNow refused to query sys_choice (HTTP 403)."
    )
    await world.sync()
    stored = world.row()
    assert stored.instance_state_labels == {"incident": {"2": "Working"}}
    assert stored.last_reconciled_at == NOW


async def test_a_record_seen_before_its_row_existed_is_repaired_by_the_reconciliation(
    world: SyncWorld,
) -> None:
    world.connect()
    # A run lists the record while our row is not written yet (the create is still finishing).
    ticket_id = world.ticket("incident", "2", W)
    row = world.tickets.rows.pop((TENANT, ticket_id))
    await world.sync()
    assert world.tickets.writes == []
    # The row lands with the state the create answered; the record moved on meanwhile.
    world.tickets.rows[(TENANT, ticket_id)] = row.model_copy(update={"state": "1"})
    await world.sync()  # a normal run: that version is in the seen set, so it is skipped
    assert world.tickets.state(TENANT, ticket_id) == "1"
    await world.sync(reconcile_every=timedelta(0))  # the daily reconciliation trusts no seen set
    assert world.tickets.state(TENANT, ticket_id) == "2"


async def test_a_record_dated_in_the_future_does_not_carry_the_watermark_past_tomorrow(
    world: SyncWorld,
) -> None:
    world.connect()
    world.ticket("incident", "2", "2099-01-01 00:00:00")
    await world.sync()
    mark = world.row().watermarks["incident"]
    assert mark <= (NOW + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert mark >= W


async def test_the_watermark_never_moves_backwards(world: SyncWorld) -> None:
    world.connect()
    world.ticket("incident", "2", W)
    later = "2025-03-01 11:59:00"

    def another_run_advanced_it(requests: int) -> None:  # a run that finished while this one read
        if requests != 1:
            return
        row = world.row()
        world.connections.rows[TENANT] = row.model_copy(
            update={"watermarks": {**row.watermarks, "incident": later}}
        )

    world.servicenow.between_requests.append(another_run_advanced_it)
    await world.sync()
    assert world.row().watermarks["incident"] == later


async def test_a_table_without_our_records_is_not_reconciled_on_every_run(world: SyncWorld) -> None:
    world.connect(watermarks={}, last_reconciled_at=NOW)
    world.ticket("incident", "1", W)  # incidents only: change_request has nothing of ours
    await world.sync()
    assert "change_request" in world.row().watermarks
    world.tickets.index_reads = 0
    world.servicenow.requests.clear()
    await world.sync()
    assert world.tickets.index_reads == 0  # no reconciliation: it would read the whole index
    assert all("sys_updated_on>=" in query for _, query in world.servicenow.requests)


async def test_a_request_made_after_the_running_sync_started_is_put_back_for_after_it(
    world: SyncWorld,
) -> None:
    world.connect(sync_lease_until=NOW + timedelta(minutes=3))  # started 7 minutes ago
    request = world.request(reason="manual", at=NOW)
    outcome = await world.service().sync_tenant(request)
    assert (outcome.skipped or "").startswith("another sync of this tenant is running")
    assert world.tokens.calls == []
    [body] = world.queue.bodies
    assert SyncRequest.model_validate_json(body) == request
    assert world.queue.delays == [15]
