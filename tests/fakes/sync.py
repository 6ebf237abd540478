"""The sync's other ports for unit tests: the `tickets` table (`TicketStore`), the token refresh
(`TokenRefresher`) and the `sync-requests` queue (`MessageQueue`).

`SyncTickets` keeps whole ticket rows, as the real table does, and notes what the sync did to
them: `writes` (every batch of state changes), `deleted`, `index_reads`. `fail_writes` makes state
writes fail as an unavailable Table Storage would.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from shared.clock import Clock
from shared.errors import PreconditionFailed, ReauthorizationRequired, UpstreamUnavailable
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

_etags = (f'W/"s{n}"' for n in itertools.count(1))


class SyncTickets:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Ticket]] = {}  # tenant -> ticket id -> row
        self.writes: list[list[TicketStateChange]] = []
        self.deleted: dict[str, datetime] = {}  # ticket id -> when it was marked deleted
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
        ticket = Ticket(
            tenant_id=tenant_id,
            ticket_id=ticket_id,
            type=type,
            sys_id=sys_id,
            number=f"{'INC' if type == 'incident' else 'CHG'}{len(self.rows.get(tenant_id, {})):07d}",
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
            etag=next(_etags),
        )
        self.rows.setdefault(tenant_id, {})[ticket_id] = ticket
        return ticket

    def state(self, tenant_id: str, ticket_id: str) -> str:
        return self.rows[tenant_id][ticket_id].state

    async def add(self, ticket: Ticket) -> Ticket:
        rows = self.rows.setdefault(ticket.tenant_id, {})
        if ticket.ticket_id in rows:
            raise PreconditionFailed()
        rows[ticket.ticket_id] = ticket.model_copy(update={"etag": next(_etags)})
        return rows[ticket.ticket_id]

    async def get(self, tenant_id: str, ticket_id: str) -> Ticket | None:
        return self.rows.get(tenant_id, {}).get(ticket_id)

    async def page(
        self,
        tenant_id: str,
        *,
        type: TicketType | None = None,
        state: str | None = None,
        top: int = 50,
        continuation_token: str | None = None,
    ) -> tuple[list[Ticket], str | None]:
        rows = sorted(self.rows.get(tenant_id, {}).values(), key=lambda t: t.ticket_id)  # newest first
        rows = [t for t in rows if (type is None or t.type == type) and (state is None or t.state == state)]
        start = int(continuation_token or 0)
        following = str(start + top) if start + top < len(rows) else None
        return rows[start : start + top], following

    async def count_by_state(self, tenant_id: str) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for ticket in self.rows.get(tenant_id, {}).values():
            counts[(ticket.type, ticket.state)] = counts.get((ticket.type, ticket.state), 0) + 1
        return counts

    async def sync_index(self, tenant_id: str) -> dict[str, TicketSyncEntry]:
        self.index_reads += 1
        return {
            ticket.ticket_id: TicketSyncEntry(
                ticket_id=ticket.ticket_id,
                type=ticket.type,
                sys_id=ticket.sys_id,
                state=ticket.state,
                created_at=ticket.created_at,
                deleted=ticket.deleted_in_servicenow_at is not None,
            )
            for ticket in self.rows.get(tenant_id, {}).values()
        }

    async def apply_state_changes(
        self, tenant_id: str, changes: Sequence[TicketStateChange]
    ) -> StateChangeResult:
        if self.fail_writes:
            raise UpstreamUnavailable("Table Storage is unavailable (update tickets).")
        self.writes.append(list(changes))
        rows = self.rows.get(tenant_id, {})
        missing = tuple(change.ticket_id for change in changes if change.ticket_id not in rows)
        for change in changes:
            if change.ticket_id in rows:
                rows[change.ticket_id] = rows[change.ticket_id].model_copy(
                    update={
                        "state": change.state,
                        "state_updated_at": change.state_updated_at,
                        "servicenow_updated_on": change.servicenow_updated_on,
                        "etag": next(_etags),
                    }
                )
        return StateChangeResult(applied=len(changes) - len(missing), missing=missing)

    async def mark_deleted(self, tenant_id: str, ticket_ids: Sequence[str], at: datetime) -> int:
        rows = self.rows.get(tenant_id, {})
        for ticket_id in ticket_ids:
            self.deleted[ticket_id] = at
            if ticket_id in rows:
                update = {"deleted_in_servicenow_at": at, "etag": next(_etags)}
                rows[ticket_id] = rows[ticket_id].model_copy(update=update)
        return len(ticket_ids)


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


def _conforms(tickets: SyncTickets, tokens: FakeTokenRefresher, queue: RecordingQueue) -> None:
    # mypy checks here that the fakes implement the ports.
    _tickets: TicketStore = tickets
    _tokens: TokenRefresher = tokens
    _queue: MessageQueue = queue
