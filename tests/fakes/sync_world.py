"""The sync wired to fakes of all its ports, and what the sync's unit tests do with it: connect a
tenant, make tickets (our row and its ServiceNow record), run a sync."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.models import ConnectionStatus, SyncReason, SyncRequest, TicketType
from shared.records import Connection, new_ticket_id
from shared.services.sync_config import SyncConfig
from shared.services.sync_lease import listed_row
from shared.services.sync_run import SyncOutcome
from shared.services.syncing import SyncService
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryOAuthStateRepository
from tests.fakes.servicenow_tables import FakeServiceNowTables
from tests.fakes.sync import CountingConnections, FakeTokenRefresher, RecordingQueue, SyncTickets

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TENANT = "11111111-1111-1111-1111-111111111111"
W = "2025-03-01 11:00:00"  # a watermark (ServiceNow's one-second resolution)
W_LOOKED_BACK = "2025-03-01 10:58:00"  # what a run asks for: the watermark less the 2-minute look-back


@dataclass
class SyncWorld:
    clock: FakeClock
    connections: CountingConnections
    states: InMemoryOAuthStateRepository
    tickets: SyncTickets
    tokens: FakeTokenRefresher
    servicenow: FakeServiceNowTables
    queue: RecordingQueue
    config: SyncConfig

    @classmethod
    def create(cls) -> SyncWorld:
        clock = FakeClock(NOW)
        connections = CountingConnections()
        return cls(
            clock=clock,
            connections=connections,
            states=InMemoryOAuthStateRepository(),
            tickets=SyncTickets(),
            tokens=FakeTokenRefresher(connections, clock),
            servicenow=FakeServiceNowTables(clock),
            queue=RecordingQueue(),
            config=SyncConfig(),
        )

    def service(self, **config: Any) -> SyncService:
        """The sync, with `config` (SyncConfig fields) instead of the defaults."""
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

    def connect(self, tenant_id: str = TENANT, **fields: Any) -> None:
        """A connected tenant (or as `fields` say), synced up to the watermark `W` an hour ago."""
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
        self.connections.rows[tenant_id] = Connection(**values)

    def row(self, tenant_id: str = TENANT) -> Connection:
        """The tenant's connection row as stored now."""
        return self.connections.rows[tenant_id]

    def ticket(
        self, table: TicketType, state: str, updated: str, tenant_id: str = TENANT, **extra: str
    ) -> str:
        """A ticket of ours, in our rows and in ServiceNow. Returns the ticket id."""
        created = NOW - timedelta(days=1)
        ticket_id = new_ticket_id(created)
        sys_id = self.servicenow.add(table, ticket_id, state, updated, **extra)
        self.tickets.seed(tenant_id, ticket_id, type=table, sys_id=sys_id, state=state, created_at=created)
        return ticket_id

    def sys_id(self, table: str, ticket_id: str, tenant_id: str = TENANT) -> str:
        return self.tickets.rows[(tenant_id, ticket_id)].sys_id

    def request(
        self, tenant_id: str = TENANT, reason: SyncReason = "timer", at: datetime | None = None
    ) -> SyncRequest:
        return SyncRequest(tenant_id=tenant_id, reason=reason, requested_at=at or self.clock.now())

    def timer_request(self, tenant_id: str = TENANT) -> SyncRequest:
        """The message the timer's fan-out makes now: the tenant's row, as stored now, goes with it."""
        row = listed_row(self.row(tenant_id))
        return SyncRequest(tenant_id=tenant_id, reason="timer", requested_at=self.clock.now(), row=row)

    async def sync(self, tenant_id: str = TENANT, **config: Any) -> SyncOutcome:
        """One message for the tenant, made now, run; then five minutes pass."""
        outcome = await self.service(**config).sync_tenant(self.request(tenant_id))
        self.clock.advance(minutes=5)
        return outcome
