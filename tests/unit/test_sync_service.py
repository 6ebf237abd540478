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

from shared.errors import (
    ConnectionNotReady,
    ReauthorizationRequired,
    TokenRefused,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.models import ConnectionStatus, SyncRequest
from shared.records import (
    Connection,
    StateChangeResult,
    TicketStateChange,
    TicketSyncEntry,
    TokenSet,
    new_ticket_id,
)
from shared.services.syncing import SyncConfig, SyncService, request_bound
from shared.services.ticket_mapping import CORRELATION_DISPLAY

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TENANT = "11111111-1111-1111-1111-111111111111"
W = "2025-03-01 11:00:00"  # a watermark (ServiceNow's one-second resolution)
W_LOOKED_BACK = "2025-03-01 10:58:00"  # what a run asks for: the watermark less the 2-minute look-back


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
    """ServiceNow's records of this connector, answering the queries the service makes.

    Like the real Table API, every request is evaluated afresh: `query` pages by offset (what the
    `Link` header does), `page` answers one page. `between_requests` run after each request, to
    change records while a listing is being read.
    """

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, str]]] = {"incident": {}, "change_request": {}}
        self.requests: list[tuple[str, str]] = []
        self.between_requests: list[Callable[[int], None]] = []
        self.fail: dict[str, Exception] = {}  # table -> what its next requests raise
        self.ignore_sys_id_after = False  # an instance that silently ignores `sys_id>` (see the guard)
        # The instance's sys_choice rows for the `state` element (read with the reconciliation).
        self.choices: list[dict[str, str]] = []
        self.choice_queries: list[str] = []

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

    def _matching(self, table: str, query: str) -> list[dict[str, str]]:
        rows = list(self.tables[table].values())
        order: list[str] = []
        for clause in query.split("^"):
            if clause.startswith("ORDERBY"):
                order.append(clause[len("ORDERBY") :])
            elif clause.startswith("sys_idIN"):
                wanted = set(clause[len("sys_idIN") :].split(","))
                rows = [r for r in rows if r["sys_id"] in wanted]
            elif clause.startswith("sys_id>"):
                if not self.ignore_sys_id_after:
                    rows = [r for r in rows if r["sys_id"] > clause[len("sys_id>") :]]
            else:
                tests: list[tuple[str, Callable[[str, str], bool]]] = [
                    (">=", lambda a, b: a >= b),
                    (">", lambda a, b: a > b),
                    ("=", lambda a, b: a == b),
                ]
                for op, test in tests:
                    name, found, value = clause.partition(op)
                    if found and name in ("correlation_display", "sys_updated_on"):
                        rows = [r for r in rows if test(r.get(name, ""), value)]
                        break
                else:
                    raise AssertionError(f"unexpected clause {clause!r}")
        assert order, "every listing must be ordered"
        rows.sort(key=lambda r: tuple(r[name] for name in order))
        return rows

    def _request(self, table: str, query: str) -> None:
        self.requests.append((table, query))
        if table in self.fail:
            self._after_request()  # what happens meanwhile happens whether or not this one fails
            raise self.fail[table]

    def _after_request(self) -> None:
        for hook in list(self.between_requests):
            hook(len(self.requests))

    async def page(
        self, connection: Connection, table: str, query: str, fields: list[str], *, limit: int = 1000
    ) -> list[dict[str, Any]]:
        if table == "sys_choice":
            assert fields == ["name", "value", "label"]
            self.choice_queries.append(query)
            if "sys_choice" in self.fail:
                raise self.fail["sys_choice"]
            return [dict(row) for row in self.choices]
        assert fields == ["sys_id", "correlation_id", "state", "sys_updated_on"]
        assert 1 <= limit <= 1000
        self._request(table, query)
        rows = self._matching(table, query)[:limit]
        self._after_request()
        return [{name: r[name] for name in fields} for r in rows]

    async def query(
        self, connection: Connection, table: str, query: str, fields: list[str], *, page_size: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        assert fields == ["sys_id", "correlation_id", "state", "sys_updated_on"]
        offset = 0
        while True:
            self._request(table, query)
            rows = self._matching(table, query)[offset : offset + page_size]
            self._after_request()
            page = [{name: r[name] for name in fields} for r in rows]
            if page:
                yield page
            if len(page) < page_size:
                return
            offset += page_size


class FakeStates:
    def __init__(self) -> None:
        self.calls: list[tuple[datetime, int]] = []
        self.fail: Exception | None = None

    async def delete_expired(self, before: datetime, *, limit: int = 1000) -> int:
        self.calls.append((before, limit))
        if self.fail is not None:
            raise self.fail
        return min(limit, 3)


class FakeQueue:
    name = "sync-requests"

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.delays: list[int] = []

    async def send(self, body: str, *, delay_s: int = 0) -> None:
        self.bodies.append(body)
        self.delays.append(delay_s)

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
    states: FakeStates
    config: SyncConfig

    def service(self, **config: Any) -> SyncService:
        return SyncService(
            connections=self.connections,
            tickets=self.tickets,
            tokens=self.tokens,
            records=self.servicenow,
            queue=self.queue,
            states=self.states,
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

    def request(
        self, tenant_id: str = TENANT, reason: str = "timer", at: datetime | None = None
    ) -> SyncRequest:
        return SyncRequest.model_validate(
            {"tenantId": tenant_id, "reason": reason, "requestedAt": at or self.clock()}
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
        states=FakeStates(),
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
        assert query.startswith(f"correlation_display={CORRELATION_DISPLAY}^sys_updated_on>={W_LOOKED_BACK}^")
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
    world.connect(sync_lease_until=NOW + timedelta(minutes=3))  # a run that started 7 minutes ago
    busy = await world.service().sync_tenant(world.request(at=NOW - timedelta(minutes=8)))
    assert busy.skipped == "another sync of this tenant is running"
    assert world.tokens.calls == 0
    assert world.queue.bodies == []  # that run covers a request made before it started

    # A run that started (and so queried ServiceNow) after the request was made covers it.
    world.connect(last_sync_started_at=NOW + timedelta(seconds=1), last_sync_at=NOW + timedelta(minutes=1))
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


# --- keyset paging (a record that moves while the pages are read) ---------------------------------------


async def test_a_record_updated_while_the_pages_are_read_does_not_push_another_out_of_view(
    world: World,
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
    assert connection(world).watermarks["incident"] == "2025-03-01 11:30:00"
    incident_queries = [query for table, query in world.servicenow.requests if table == "incident"]
    assert incident_queries[1].startswith(
        f"correlation_display={CORRELATION_DISPLAY}^sys_updated_on>=2025-03-01 11:20:04^"
    )  # the next page starts at the newest time of the page before, not at an offset
    assert all(q.endswith("^ORDERBYsys_updated_on^ORDERBYsys_id") for q in incident_queries)
    assert len(world.servicenow.requests) <= request_bound(tables=2, changed=11, page_size=5)


async def test_a_second_holding_more_than_a_page_is_read_on_by_sys_id_and_then_left_behind(
    world: World,
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
    assert connection(world).watermarks["incident"] == "2025-03-01 11:20:01"
    queries = [query for table, query in world.servicenow.requests if table == "incident"]
    assert "sys_updated_on=2025-03-01 11:20:00^sys_id>" in queries[1]
    assert "sys_updated_on>2025-03-01 11:20:00^" in queries[-1]
    assert outcome.tables[0].pages == len(queries) == 4  # 5 + 5 + 2 in the second, then 1 after it


async def test_an_instance_that_ignores_the_sys_id_bound_fails_the_run_instead_of_looping(
    world: World,
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
    assert connection(world).watermarks["incident"] == W
    assert "did not page incident on" in (connection(world).last_error or "")


async def test_a_boundary_second_comes_back_once_and_is_not_applied_twice(world: World) -> None:
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


async def test_a_record_committed_late_with_an_older_time_is_seen_by_the_next_run(world: World) -> None:
    world.connect()
    early = world.ticket("incident", "1", "2025-03-01 10:00:00")
    late = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", early), state="2", sys_updated_on="2025-03-01 11:05:00"
    )
    await world.sync()
    assert connection(world).watermarks["incident"] == "2025-03-01 11:05:00"

    # A transaction that began before our read commits after it: its time is older than the watermark.
    world.servicenow.set(
        "incident", world.sys_id("incident", late), state="6", sys_updated_on="2025-03-01 11:04:10"
    )
    await world.sync()

    assert world.tickets.state(TENANT, late) == "6"
    assert connection(world).watermarks["incident"] == "2025-03-01 11:05:00"


async def test_records_of_the_look_back_window_already_handled_cost_no_read_of_our_rows(world: World) -> None:
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
    seen = connection(world).watermarks["incident@seen"]
    assert seen.count(",") == 3  # four records in the window, each with its time below the watermark


async def test_a_seen_set_stored_before_the_look_back_still_means_the_watermarks_second(world: World) -> None:
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
    world: World, refusal: Exception
) -> None:
    world.connect()
    ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")
    world.servicenow.set(
        "incident", world.sys_id("incident", ticket), state="2", sys_updated_on="2025-03-01 11:10:00"
    )
    world.servicenow.fail["change_request"] = refusal

    outcome = await world.sync()  # no exception: the host would only retry it 5 times and poison it

    assert outcome.skipped == "rejected by ServiceNow"
    failed = connection(world)
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
    assert connection(world).last_error is None


async def test_a_long_retry_after_pauses_the_tenant_until_then(world: World) -> None:
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
    paused = connection(world)
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
    assert connection(world).sync_not_before is None
    assert connection(world).last_error is None


async def test_a_short_retry_after_is_left_to_the_hosts_retries(world: World) -> None:
    world.connect()
    world.servicenow.fail["incident"] = UpstreamUnavailable(
        "ServiceNow is unavailable or rate limiting us (query incident: HTTP 429).",
        retry_after=20,
        hinted=True,
    )

    with pytest.raises(UpstreamUnavailable):
        await world.sync()

    assert connection(world).sync_not_before is None
    assert connection(world).last_error is not None
    assert connection(world).sync_lease_until is None


# --- status writes never overwrite newer news ----------------------------------------------------------------


def _reauthorize(world: World) -> None:
    """What the OAuth callback does when an admin re-authorizes: same row, a new grant."""
    world.connections.rows[TENANT] = connection(world).model_copy(
        update={
            "status": ConnectionStatus.CONNECTED,
            "connected_at": world.clock() + timedelta(seconds=30),
            "last_error": None,
        }
    )


async def test_a_stale_failure_does_not_flip_a_connection_reauthorized_during_the_run(world: World) -> None:
    world.connect(connected_at=NOW - timedelta(days=3))
    original = world.tokens.refresh_if_expiring

    async def reauthorized_meanwhile(connection: Connection, within: timedelta) -> TokenSet:
        _reauthorize(world)
        raise ConnectionNotReady("No ServiceNow client secret is stored for this tenant.")

    world.tokens.refresh_if_expiring = reauthorized_meanwhile  # type: ignore[method-assign]
    outcome = await world.sync()

    assert outcome.skipped == "reauthorization required"
    current = connection(world)
    assert current.status == ConnectionStatus.CONNECTED
    assert current.last_error is None
    assert current.sync_lease_until is None  # the lease is still released

    world.tokens.refresh_if_expiring = original  # type: ignore[method-assign]
    world.servicenow.fail["incident"] = UpstreamUnavailable("ServiceNow did not answer (query incident).")

    def reauthorize_on_request(request_count: int) -> None:
        _reauthorize(world)

    world.servicenow.between_requests.append(reauthorize_on_request)
    with pytest.raises(UpstreamUnavailable):
        await world.sync()
    assert connection(world).last_error is None  # a failure of the old grant is not the new one's


async def test_a_success_keeps_the_error_of_a_grant_that_died_during_the_run(world: World) -> None:
    world.connect()

    def grant_dies_meanwhile(request_count: int) -> None:
        # A ticket request of the same tenant found the grant dead (what AccessTokens records).
        world.connections.rows[TENANT] = connection(world).model_copy(
            update={
                "status": ConnectionStatus.REAUTHORIZATION_REQUIRED,
                "last_error": "access_denied An admin must re-authorize the connection.",
            }
        )

    world.servicenow.between_requests.append(grant_dies_meanwhile)
    await world.sync()

    current = connection(world)
    assert current.status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert current.last_error == "access_denied An admin must re-authorize the connection."
    assert current.sync_lease_until is None


async def test_a_run_whose_lease_was_taken_over_leaves_the_new_lease_alone(world: World) -> None:
    world.connect()
    theirs = NOW + timedelta(minutes=20)

    def another_worker_takes_over(request_count: int) -> None:
        world.connections.rows[TENANT] = connection(world).model_copy(update={"sync_lease_until": theirs})

    world.servicenow.between_requests.append(another_worker_takes_over)
    await world.sync()
    assert connection(world).sync_lease_until == theirs

    world.servicenow.fail["incident"] = UpstreamUnavailable("ServiceNow did not answer (query incident).")
    world.connect(sync_lease_until=None)
    with pytest.raises(UpstreamUnavailable):
        await world.sync()
    assert connection(world).sync_lease_until == theirs
    assert connection(world).last_error is None  # the other worker's run is the newer news


# --- sync now during a run ------------------------------------------------------------------------------------


async def test_a_manual_request_made_during_a_run_is_not_dropped(world: World) -> None:
    world.connect()
    ticket = world.ticket("incident", "1", "2025-03-01 10:00:00")

    def slow_run(request_count: int) -> None:
        if request_count == 1:
            world.clock.advance(minutes=3)  # the run goes on (other tables, our rows) for a while

    world.servicenow.between_requests.append(slow_run)
    await world.service().sync_tenant(world.request())
    world.servicenow.between_requests.clear()
    first = connection(world)

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
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    assert await world.service().purge_expired_states() == 3
    assert world.states.calls == [(NOW - timedelta(days=1), 1000)]
    assert "Deleted 3 OAuth state(s)" in caplog.text

    world.states.fail = UpstreamUnavailable("Table Storage is unavailable (list oauthstates).")
    assert await world.service().purge_expired_states() == 0  # logged, never raised
    assert "Could not delete expired OAuth states" in caplog.text


async def test_the_reconciliation_reads_the_instances_own_state_labels(world: World) -> None:
    world.connect(last_reconciled_at=NOW - timedelta(days=2))
    world.servicenow.choices = [
        {"name": "incident", "value": "2", "label": "Work in Progress"},
        {"name": "incident", "value": "9", "label": "Awaiting Vendor"},  # a state this instance added
        {"name": "problem", "value": "1", "label": "Not ours"},
    ]
    await world.sync()
    assert connection(world).instance_state_labels == {
        "incident": {"2": "Work in Progress", "9": "Awaiting Vendor"}
    }
    [query] = world.servicenow.choice_queries
    assert query.startswith("nameINincident,change_request^element=state")

    # Normal runs do not read them again; a failure to read them fails no sync.
    await world.sync()
    assert len(world.servicenow.choice_queries) == 1


async def test_unreadable_state_labels_keep_the_ones_stored(world: World) -> None:
    world.connect(last_reconciled_at=None, instance_state_labels={"incident": {"2": "Working"}})
    world.servicenow.fail["sys_choice"] = UpstreamRejected(
        "ServiceNow refused to query sys_choice (HTTP 403)."
    )
    await world.sync()
    stored = connection(world)
    assert stored.instance_state_labels == {"incident": {"2": "Working"}}
    assert stored.last_reconciled_at == NOW


async def test_a_record_seen_before_its_row_existed_is_repaired_by_the_reconciliation(world: World) -> None:
    world.connect()
    # A run lists the record while our row is not written yet (the create is still finishing).
    ticket_id = world.ticket("incident", "2", W)
    row = world.tickets.rows[TENANT].pop(ticket_id)
    await world.sync()
    assert world.tickets.writes == []
    # The row lands with the state the create answered; the record moved on meanwhile.
    world.tickets.rows[TENANT][ticket_id] = replace(row, state="1")
    await world.sync()  # a normal run: that version is in the seen set, so it is skipped
    assert world.tickets.state(TENANT, ticket_id) == "1"
    await world.sync(reconcile_every=timedelta(0))  # the daily reconciliation trusts no seen set
    assert world.tickets.state(TENANT, ticket_id) == "2"


async def test_a_record_dated_in_the_future_does_not_carry_the_watermark_past_tomorrow(world: World) -> None:
    world.connect()
    world.ticket("incident", "2", "2099-01-01 00:00:00")
    await world.sync()
    mark = connection(world).watermarks["incident"]
    assert mark <= (NOW + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert mark >= W


async def test_the_watermark_never_moves_backwards(world: World) -> None:
    world.connect()
    world.ticket("incident", "2", W)
    later = "2025-03-01 11:59:00"

    def another_run_advanced_it(requests: int) -> None:  # a run that finished while this one read
        if requests != 1:
            return
        row = connection(world)
        world.connections.rows[TENANT] = row.model_copy(
            update={"watermarks": {**row.watermarks, "incident": later}}
        )

    world.servicenow.between_requests.append(another_run_advanced_it)
    await world.sync()
    assert connection(world).watermarks["incident"] == later


async def test_a_table_without_our_records_is_not_reconciled_on_every_run(world: World) -> None:
    world.connect(watermarks={}, last_reconciled_at=NOW)
    world.ticket("incident", "1", W)  # incidents only: change_request has nothing of ours
    await world.sync()
    assert "change_request" in connection(world).watermarks
    world.tickets.index_reads = 0
    world.servicenow.requests.clear()
    await world.sync()
    assert world.tickets.index_reads == 0  # no reconciliation: it would read the whole index
    assert all("sys_updated_on>=" in query for _, query in world.servicenow.requests)


async def test_a_request_made_after_the_running_sync_started_is_put_back_for_after_it(world: World) -> None:
    world.connect(sync_lease_until=NOW + timedelta(minutes=3))  # started 7 minutes ago
    request = world.request(reason="manual", at=NOW)
    outcome = await world.service().sync_tenant(request)
    assert (outcome.skipped or "").startswith("another sync of this tenant is running")
    assert world.tokens.calls == 0
    [body] = world.queue.bodies
    assert SyncRequest.model_validate_json(body) == request
    assert world.queue.delays == [15]
