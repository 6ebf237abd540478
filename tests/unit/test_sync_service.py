"""SyncService policy with small fakes of its ports (no I/O): what ends up in our rows and on the
connection, and how many ServiceNow requests it took."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from shared.errors import ConnectionNotReady, ReauthorizationRequired, UpstreamUnavailable
from shared.models import Connection, ConnectionStatus, SyncRequest, TokenSet
from shared.services.syncing import SyncConfig, SyncService, request_bound
from shared.services.ticket_mapping import CORRELATION_DISPLAY
from shared.stores.tickets import StateChangeResult, TicketStateChange, TicketSyncEntry, new_ticket_id

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TENANT = "11111111-1111-1111-1111-111111111111"
W = "2025-03-01 11:00:00"  # a watermark (ServiceNow's one-second resolution)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class FakeConnections:
    def __init__(self, events: list[str]) -> None:
        self.rows: dict[str, Connection] = {}
        self.events = events

    async def get(self, tenant_id: str) -> Connection | None:
        return self.rows.get(tenant_id)

    async def update(
        self, tenant_id: str, change: Callable[[Connection], dict[str, Any]], *, attempts: int = 3
    ) -> Connection | None:
        current = self.rows.get(tenant_id)
        if current is None:
            return None
        updated = current.model_copy(update=change(current))
        if updated.watermarks != current.watermarks:
            self.events.append("watermarks")
        self.rows[tenant_id] = updated
        return updated

    async def with_status(self, status: ConnectionStatus) -> AsyncIterator[Connection]:
        for connection in list(self.rows.values()):
            if connection.status == status:
                yield connection


class FakeTickets:
    def __init__(self, events: list[str]) -> None:
        self.rows: dict[str, dict[str, TicketSyncEntry]] = {}
        self.events = events
        self.writes: list[list[TicketStateChange]] = []
        self.deleted: dict[str, datetime] = {}
        self.index_reads = 0
        self.fail_writes = False

    async def sync_index(self, tenant_id: str) -> dict[str, TicketSyncEntry]:
        self.index_reads += 1
        return dict(self.rows.get(tenant_id, {}))

    async def apply_state_changes(
        self, tenant_id: str, changes: Sequence[TicketStateChange]
    ) -> StateChangeResult:
        if self.fail_writes:
            raise UpstreamUnavailable("Table Storage is unavailable (update tickets).")
        self.writes.append(list(changes))
        self.events.append("write")
        rows = self.rows[tenant_id]
        for change in changes:
            rows[change.ticket_id] = replace(rows[change.ticket_id], state=change.state)
        return StateChangeResult(applied=len(changes), missing=())

    async def mark_deleted(self, tenant_id: str, ticket_ids: Sequence[str], at: datetime) -> int:
        for ticket_id in ticket_ids:
            self.deleted[ticket_id] = at
            self.rows[tenant_id][ticket_id] = replace(self.rows[tenant_id][ticket_id], deleted=True)
        return len(ticket_ids)

    def state(self, tenant_id: str, ticket_id: str) -> str:
        return self.rows[tenant_id][ticket_id].state


class FakeTokens:
    def __init__(self, connections: FakeConnections) -> None:
        self.connections = connections
        self.calls = 0
        self.fail: Exception | None = None
        self.refresh_expires_at = NOW + timedelta(days=90)

    async def refresh_if_expiring(self, connection: Connection, within: timedelta) -> TokenSet:
        self.calls += 1
        if isinstance(self.fail, ReauthorizationRequired):
            # What AccessTokens does on a dead grant.
            await self.connections.update(
                connection.tenant_id,
                lambda _: {
                    "status": ConnectionStatus.REAUTHORIZATION_REQUIRED,
                    "last_error": "access_denied",
                },
            )
        if self.fail is not None:
            raise self.fail
        return TokenSet(
            access_token=SecretStr("a"),
            refresh_token=SecretStr("r"),
            access_token_expires_at=NOW + timedelta(minutes=30),
            refresh_token_expires_at=self.refresh_expires_at,
        )


class FakeServiceNow:
    """ServiceNow's records of this connector, answering the queries the service makes."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, str]]] = {"incident": {}, "change_request": {}}
        self.requests: list[tuple[str, str]] = []

    def add(self, table: str, ticket_id: str, state: str, updated: str, **extra: str) -> str:
        sys_id = secrets.token_hex(16)
        self.tables[table][sys_id] = {
            "sys_id": sys_id,
            "correlation_id": ticket_id,
            "correlation_display": CORRELATION_DISPLAY,
            "state": state,
            "sys_updated_on": updated,
            **extra,
        }
        return sys_id

    def set(self, table: str, sys_id: str, **fields: str) -> None:
        self.tables[table][sys_id].update(fields)

    async def query(
        self, connection: Connection, table: str, query: str, fields: list[str], *, page_size: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        assert fields == ["sys_id", "correlation_id", "state", "sys_updated_on"]
        rows = list(self.tables[table].values())
        for clause in query.split("^"):
            if clause.startswith("correlation_display="):
                rows = [r for r in rows if r.get("correlation_display") == clause.split("=", 1)[1]]
            elif clause.startswith("sys_updated_on>="):
                rows = [r for r in rows if r["sys_updated_on"] >= clause.split(">=", 1)[1]]
            elif clause.startswith("sys_idIN"):
                wanted = set(clause[len("sys_idIN") :].split(","))
                rows = [r for r in rows if r["sys_id"] in wanted]
            else:
                assert clause.startswith("ORDERBY"), clause
        rows.sort(key=lambda r: (r["sys_updated_on"], r["sys_id"]))
        for start in range(0, max(len(rows), 1), page_size):
            self.requests.append((table, query))
            page = [{name: r[name] for name in fields} for r in rows[start : start + page_size]]
            if page:
                yield page
            if len(page) < page_size:
                return


class FakeQueue:
    name = "sync-requests"

    def __init__(self) -> None:
        self.bodies: list[str] = []

    async def send(self, body: str) -> None:
        self.bodies.append(body)

    async def aclose(self) -> None:
        pass


@dataclass
class World:
    clock: Clock
    events: list[str]
    connections: FakeConnections
    tickets: FakeTickets
    tokens: FakeTokens
    servicenow: FakeServiceNow
    queue: FakeQueue
    config: SyncConfig

    def service(self, **config: Any) -> SyncService:
        return SyncService(
            connections=self.connections,
            tickets=self.tickets,
            tokens=self.tokens,
            records=self.servicenow,
            queue=self.queue,
            config=replace(self.config, **config),
            clock=self.clock,
        )

    def connect(self, tenant_id: str = TENANT, **fields: Any) -> Connection:
        values: dict[str, Any] = {
            "tenant_id": tenant_id,
            "instance": "contoso",
            "instance_url": "https://contoso.service-now.com",
            "client_id": "client",
            "status": ConnectionStatus.CONNECTED,
            "access_token_expires_at": NOW + timedelta(minutes=30),
            "watermarks": {"incident": W, "change_request": W},
            "last_reconciled_at": NOW - timedelta(hours=1),
            "updated_at": NOW,
            **fields,
        }
        connection = Connection(**values)
        self.connections.rows[tenant_id] = connection
        self.tickets.rows.setdefault(tenant_id, {})
        return connection

    def ticket(self, table: str, state: str, updated: str, tenant_id: str = TENANT, **extra: str) -> str:
        """A ticket of ours, in our rows and in ServiceNow. Returns the ticket id."""
        ticket_id = new_ticket_id(NOW - timedelta(days=1))
        sys_id = self.servicenow.add(table, ticket_id, state, updated, **extra)
        self.tickets.rows.setdefault(tenant_id, {})[ticket_id] = TicketSyncEntry(
            ticket_id=ticket_id,
            type=table,
            sys_id=sys_id,
            state=state,
            created_at=NOW - timedelta(days=1),
            deleted=False,
        )
        return ticket_id

    def sys_id(self, table: str, ticket_id: str, tenant_id: str = TENANT) -> str:
        return self.tickets.rows[tenant_id][ticket_id].sys_id

    def request(self, tenant_id: str = TENANT, reason: str = "timer") -> SyncRequest:
        return SyncRequest.model_validate(
            {"tenantId": tenant_id, "reason": reason, "requestedAt": self.clock()}
        )

    async def sync(self, tenant_id: str = TENANT, **config: Any) -> Any:
        outcome = await self.service(**config).sync_tenant(self.request(tenant_id))
        self.clock.advance(minutes=5)
        return outcome


@pytest.fixture
def world() -> World:
    events: list[str] = []
    connections = FakeConnections(events)
    return World(
        clock=Clock(),
        events=events,
        connections=connections,
        tickets=FakeTickets(events),
        tokens=FakeTokens(connections),
        servicenow=FakeServiceNow(),
        queue=FakeQueue(),
        config=SyncConfig(),
    )


def connection(world: World, tenant_id: str = TENANT) -> Connection:
    return world.connections.rows[tenant_id]


# --- pulling changes ----------------------------------------------------------------------------------


async def test_changes_of_both_tables_are_applied_and_the_watermarks_move_to_the_newest(world: World) -> None:
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
    saved = connection(world)
    assert saved.watermarks["incident"] == "2025-03-01 11:05:00"
    assert saved.watermarks["change_request"] == "2025-03-01 11:07:09"
    assert saved.last_sync_at == NOW
    assert saved.last_error is None
    assert saved.sync_lease_until is None
    [change_written] = [c for batch in world.tickets.writes for c in batch if c.ticket_id == change]
    assert change_written.state_updated_at == datetime(2025, 3, 1, 11, 7, 9, tzinfo=UTC)
    assert change_written.servicenow_updated_on == "2025-03-01 11:07:09"


async def test_a_normal_run_makes_one_request_per_table_and_only_asks_for_this_connectors_changes(
    world: World,
) -> None:
    world.connect()
    for n in range(30):
        world.ticket("incident", "1", f"2025-03-01 10:{n:02d}:00")
    world.servicenow.add("incident", "someone-elses", "2", "2025-03-01 11:30:00", correlation_display="Other")

    await world.sync()

    assert len(world.servicenow.requests) == 2  # one per table
    for _, query in world.servicenow.requests:
        assert query.startswith(f"correlation_display={CORRELATION_DISPLAY}^sys_updated_on>={W}^")
        assert query.endswith("^ORDERBYsys_updated_on^ORDERBYsys_id")
    assert world.tickets.writes == []
    assert world.tickets.index_reads == 0  # nothing changed: our rows were not even read


async def test_an_update_in_the_same_second_as_the_watermark_is_not_missed(world: World) -> None:
    world.connect()
    first = world.ticket("incident", "1", "2025-03-01 10:00:00")
    second = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", first), state="2", sys_updated_on="2025-03-01 11:10:10"
    )
    await world.sync()
    assert connection(world).watermarks["incident"] == "2025-03-01 11:10:10"

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


async def test_paging_reads_every_page_and_stays_within_the_request_bound(world: World) -> None:
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
    assert connection(world).watermarks["incident"] == "2025-03-01 11:20:11"


async def test_only_state_changes_are_written_and_other_tenants_records_are_ignored(world: World) -> None:
    world.connect()
    noted = world.ticket("incident", "2", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", noted), sys_updated_on="2025-03-01 11:30:00"
    )  # a work note
    # The same instance serves another tenant: its tickets carry our display name but not our ids.
    world.servicenow.add("incident", new_ticket_id(NOW), "6", "2025-03-01 11:31:00")

    await world.sync()

    assert world.tickets.writes == []
    assert connection(world).watermarks["incident"] == "2025-03-01 11:31:00"


async def test_the_watermark_does_not_move_when_writing_the_rows_fails(world: World) -> None:
    world.connect()
    ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", ticket), state="6", sys_updated_on="2025-03-01 11:40:00"
    )
    world.tickets.fail_writes = True

    with pytest.raises(UpstreamUnavailable):
        await world.sync()

    failed = connection(world)
    assert failed.watermarks["incident"] == W
    assert failed.last_error is not None
    assert "Table Storage is unavailable" in failed.last_error
    assert failed.last_sync_at is None
    assert failed.sync_lease_until is None  # the retry may start at once

    world.tickets.fail_writes = False
    await world.sync()
    assert world.tickets.state(TENANT, ticket) == "6"
    assert connection(world).watermarks["incident"] == "2025-03-01 11:40:00"
    assert connection(world).last_error is None
    # Rows first, watermark after: every watermark change follows the write it covers.
    assert world.events.index("write") < world.events.index("watermarks")


# --- tokens and status --------------------------------------------------------------------------------


async def test_a_dead_grant_ends_the_sync_quietly_and_later_runs_skip_the_tenant(world: World) -> None:
    world.connect()
    world.connect("22222222-2222-2222-2222-222222222222")
    world.tokens.fail = ReauthorizationRequired()

    outcome = await world.sync()  # no exception: retrying the message cannot help

    assert outcome.skipped == "reauthorization required"
    assert connection(world).status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert connection(world).sync_lease_until is None
    assert world.servicenow.requests == []

    world.tokens.fail = None
    queued = await world.service().enqueue_connected("timer")
    assert queued == 1
    assert [json.loads(b)["tenantId"] for b in world.queue.bodies] == ["22222222-2222-2222-2222-222222222222"]
    calls = world.tokens.calls
    skipped = await world.sync()  # a message that was already queued
    assert skipped.skipped == "the connection is reauthorization_required"
    assert world.tokens.calls == calls


async def test_a_transient_failure_raises_and_is_recorded(world: World) -> None:
    world.connect()
    world.tokens.fail = UpstreamUnavailable("ServiceNow did not answer (refresh).")

    with pytest.raises(UpstreamUnavailable):
        await world.sync()

    assert connection(world).last_error == "Sync failed: ServiceNow did not answer (refresh)."
    assert connection(world).status == ConnectionStatus.CONNECTED


async def test_connected_without_tokens_needs_reauthorization(world: World) -> None:
    world.connect()
    world.tokens.fail = ConnectionNotReady("ServiceNow has not been authorized for this tenant yet.")

    outcome = await world.sync()

    assert outcome.skipped == "reauthorization required"
    assert connection(world).status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert connection(world).last_error


async def test_the_token_is_refreshed_with_a_ten_minute_margin(world: World) -> None:
    world.connect()
    seen: list[timedelta] = []
    original = world.tokens.refresh_if_expiring

    async def spy(connection: Connection, within: timedelta) -> TokenSet:
        seen.append(within)
        return await original(connection, within)

    world.tokens.refresh_if_expiring = spy  # type: ignore[method-assign]
    await world.sync()
    assert seen == [timedelta(minutes=10)]


# --- one worker per tenant ------------------------------------------------------------------------------


async def test_a_second_message_while_a_sync_runs_and_a_stale_message_are_dropped(world: World) -> None:
    world.connect(sync_lease_until=NOW + timedelta(minutes=3))
    busy = await world.service().sync_tenant(world.request())
    assert busy.skipped == "another sync of this tenant is running"
    assert world.tokens.calls == 0

    world.connect(last_sync_at=NOW + timedelta(seconds=1))
    stale = await world.service().sync_tenant(world.request())
    assert stale.skipped == "the tenant was synced after this request was made"

    world.connect(sync_lease_until=NOW - timedelta(seconds=1))  # an expired lease (a crashed worker)
    assert (await world.service().sync_tenant(world.request())).skipped is None


async def test_an_unknown_tenant_is_skipped(world: World) -> None:
    outcome = await world.service().sync_tenant(world.request())
    assert outcome.skipped == "not configured"


# --- deletions -----------------------------------------------------------------------------------


async def test_reconciliation_marks_deleted_records_and_repairs_missed_states(world: World) -> None:
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
    assert connection(world).last_reconciled_at == NOW

    # The next run is a normal one again: no listing, nothing deleted twice.
    world.servicenow.requests.clear()
    await world.sync()
    assert all("sys_updated_on>=" in query for _, query in world.servicenow.requests)
    assert set(world.tickets.deleted) == {gone}


async def test_a_ticket_younger_than_the_grace_period_is_not_judged(world: World) -> None:
    world.connect(last_reconciled_at=None)
    ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.tickets.rows[TENANT][ticket] = replace(world.tickets.rows[TENANT][ticket], created_at=NOW)
    del world.servicenow.tables["incident"][world.sys_id("incident", ticket)]

    await world.sync()

    assert world.tickets.deleted == {}


# --- fan-out and manual sync ---------------------------------------------------------------------------


async def test_the_timer_queues_one_message_per_connected_tenant(world: World) -> None:
    tenants = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(70)]
    for tenant in tenants:
        world.connect(tenant)
    world.connect("99999999-0000-0000-0000-000000000000", status=ConnectionStatus.PENDING_AUTHORIZATION)

    assert await world.service().enqueue_connected("timer") == 70

    messages = [SyncRequest.model_validate_json(body) for body in world.queue.bodies]
    assert sorted(m.tenant_id for m in messages) == tenants
    assert {m.reason for m in messages} == {"timer"}
    assert json.loads(world.queue.bodies[0]).keys() == {"tenantId", "reason", "requestedAt"}


async def test_a_manual_sync_needs_a_connected_tenant(world: World) -> None:
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
