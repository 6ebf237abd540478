"""The sync's other ports for unit tests: the `tickets` table (`TicketStore`), the token refresh
(`TokenRefresher`) and the `sync-requests` queue (`MessageQueue`).

`SyncTickets` is `InMemoryTickets` plus what the sync's tests look at: `seed` (a row as ticket
creation wrote it), `writes` (every batch of state changes the table applied: a transaction that
failed applied none), `requests` (every request made of the table, in order), `index_reads`,
`deleted` and `state`. `fail_writes` makes state writes fail as an unavailable Table Storage would.
`CountingConnections` is the `connections` table noting its requests. `FlakyQueue` wraps a queue to
fail chosen sends (the fan-out's tests and `bench/fanout.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from shared.clock import Clock
from shared.errors import ReauthorizationRequired, UpstreamUnavailable
from shared.models import ConnectionStatus, TicketType
from shared.ports import ConnectionStore, MessageQueue, TicketStore, TokenRefresher
from shared.records import (
    Connection,
    StateChangeResult,
    Ticket,
    TicketStateChange,
    TicketSyncEntry,
    TokenSet,
)
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.tickets import InMemoryTickets


class SyncTickets(InMemoryTickets):
    """The `tickets` table, noting what the sync did to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[TicketStateChange]] = []
        self.requests: list[str] = []  # "index", "merge" (one transaction), "apply", "mark_deleted"
        self.index_reads = 0
        self.fail_writes = False

    def seed(
        self,
        tenant_id: str,
        ticket_id: str,
        *,
        type: TicketType,
        sys_id: str,
        state: str,
        created_at: datetime,
    ) -> Ticket:
        """A row as the ticketing service would have written it."""
        earlier = sum(1 for tenant, _ in self.rows if tenant == tenant_id)
        return self.put(
            Ticket(
                tenant_id=tenant_id,
                ticket_id=ticket_id,
                type=type,
                sys_id=sys_id,
                number=f"{'INC' if type == 'incident' else 'CHG'}{earlier:07d}",
                instance_url="https://contoso.service-now.com",
                name="Require MFA for admins",
                description="Turn on MFA for every admin role.",
                priority=2,
                due_date=date(2030, 1, 1),
                recommendation_source="user",
                recommendation_category="Identity",
                created_by="admin@contoso.example",
                created_by_name="Admin",
                created_at=created_at,
                state=state,
                state_updated_at=created_at,
            )
        )

    def state(self, tenant_id: str, ticket_id: str) -> str:
        return self.rows[(tenant_id, ticket_id)].state

    @property
    def deleted(self) -> dict[str, datetime]:
        """Ticket id -> when it was marked deleted in ServiceNow."""
        return {
            ticket_id: ticket.deleted_in_servicenow_at
            for (_, ticket_id), ticket in self.rows.items()
            if ticket.deleted_in_servicenow_at is not None
        }

    async def sync_index(self, tenant_id: str) -> dict[str, TicketSyncEntry]:
        self.index_reads += 1
        self.requests.append("index")
        return await super().sync_index(tenant_id)

    async def apply_state_changes(
        self, tenant_id: str, changes: Sequence[TicketStateChange]
    ) -> StateChangeResult:
        self.requests.append("apply")
        if self.fail_writes:
            raise UpstreamUnavailable("Table Storage is unavailable (update tickets).")
        result = await super().apply_state_changes(tenant_id, changes)
        self.writes.append([change for change in changes if change.ticket_id not in result.missing])
        return result

    async def merge_states(self, tenant_id: str, changes: Sequence[TicketStateChange]) -> str | None:
        self.requests.append("merge")
        if self.fail_writes:
            raise UpstreamUnavailable("Table Storage is unavailable (update tickets).")
        missing = await super().merge_states(tenant_id, changes)
        if missing is None:
            self.writes.append(list(changes))
        return missing

    async def mark_deleted(self, tenant_id: str, ticket_ids: Sequence[str], at: datetime) -> int:
        self.requests.append("mark_deleted")
        return await super().mark_deleted(tenant_id, ticket_ids, at)


class CountingConnections(InMemoryConnectionRepository):
    """The `connections` table, noting every request made of it: "read" (a row), "write" (a
    conditional one, also when it loses), "put", "list"."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    async def get(self, tenant_id: str) -> Connection | None:
        self.requests.append("read")
        return await super().get(tenant_id)

    async def replace(self, connection: Connection) -> Connection:
        self.requests.append("write")
        return await super().replace(connection)

    async def put(self, connection: Connection) -> Connection:
        self.requests.append("put")
        return await super().put(connection)

    async def with_status(self, status: ConnectionStatus) -> AsyncIterator[Connection]:
        self.requests.append("list")
        async for connection in super().with_status(status):
            yield connection


class FakeTokenRefresher:
    """Hands out a token set valid for 30 minutes more. `fail` makes it raise instead (a dead grant
    is first recorded on the connection, as AccessTokens does); `meanwhile` hooks run first."""

    def __init__(self, connections: ConnectionStore, clock: Clock) -> None:
        self.connections = connections
        self.clock = clock
        self.calls: list[timedelta] = []  # the margin each call asked for
        self.fail: Exception | None = None
        self.meanwhile: list[Callable[[], None]] = []
        self.refresh_token_expires_at = clock.now() + timedelta(days=90)

    async def refresh_if_expiring(self, connection: Connection, within: timedelta) -> TokenSet:
        self.calls.append(within)
        for hook in list(self.meanwhile):
            hook()
        if isinstance(self.fail, ReauthorizationRequired):
            await self.connections.update(connection.tenant_id, _grant_died)
        if self.fail is not None:
            raise self.fail
        return TokenSet(
            access_token=SecretStr("a"),
            refresh_token=SecretStr("r"),
            access_token_expires_at=self.clock.now() + timedelta(minutes=30),
            refresh_token_expires_at=self.refresh_token_expires_at,
        )


def _grant_died(current: Connection) -> dict[str, Any]:
    return {"status": ConnectionStatus.REAUTHORIZATION_REQUIRED, "last_error": "access_denied"}


class RecordingQueue:
    name = "sync-requests"

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.delays: list[int] = []

    async def send(self, body: str, *, delay_s: int = 0) -> None:
        self.bodies.append(body)
        self.delays.append(delay_s)


class FlakyQueue:
    """Wraps a `MessageQueue`, failing chosen sends as an unavailable Queue Storage would, and
    noting the most sends in flight at once. Per tenant (read from the message): `fail_before[t]`
    attempts fail without sending; `fail_after[t]` attempts send and then fail (the answer lost: the
    message is there, a retry duplicates it). `attempts` counts every call per tenant."""

    def __init__(self, inner: MessageQueue) -> None:
        self.inner = inner
        self.name = inner.name
        self.fail_before: dict[str, int] = {}
        self.fail_after: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(self, body: str, *, delay_s: int = 0) -> None:
        tenant_id = str(json.loads(body)["tenantId"])
        self.attempts[tenant_id] = self.attempts.get(tenant_id, 0) + 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # a real send yields; others start meanwhile
            if _take(self.fail_before, tenant_id):
                raise UpstreamUnavailable("Queue Storage is unavailable (send to sync-requests).")
            await self.inner.send(body, delay_s=delay_s)
            if _take(self.fail_after, tenant_id):
                raise UpstreamUnavailable("Queue Storage is unavailable (send to sync-requests).")
        finally:
            self.in_flight -= 1


def _take(failures: dict[str, int], tenant_id: str) -> bool:
    if failures.get(tenant_id, 0) <= 0:
        return False
    failures[tenant_id] -= 1
    return True


def _conforms(
    tickets: SyncTickets, tokens: FakeTokenRefresher, queue: RecordingQueue, connections: CountingConnections
) -> None:
    # mypy checks here that the fakes implement the ports.
    _tickets: TicketStore = tickets
    _connections: ConnectionStore = connections
    _tokens: TokenRefresher = tokens
    _queue: MessageQueue = queue
    _flaky: MessageQueue = FlakyQueue(queue)
