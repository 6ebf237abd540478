"""The operator's fleet view: every tenant's connection health, a page at a time.

Read from the connection rows (one cross-partition query per page) and, for push from ServiceNow,
each tenant's push row (one point read per tenant of the page, made together): neither holds a
secret, and the tickets are never read, so nothing a tenant keeps in ServiceNow reaches the operator.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from shared.clock import SYSTEM_CLOCK, Clock
from shared.models import ConnectionStatus
from shared.operator_models import FleetConnection, FleetPage, FleetQuery, SyncOutcome
from shared.operator_ports import ConnectionFleet, PushStatuses
from shared.records import REFRESH_TOKEN_WARNING, Connection


class FleetService:
    def __init__(
        self, connections: ConnectionFleet, clock: Clock = SYSTEM_CLOCK, push: PushStatuses | None = None
    ) -> None:
        self._connections = connections
        self._clock = clock
        self._push = push

    async def page(self, query: FleetQuery) -> FleetPage:
        """Raises BadRequest: the continuation token is not one this view issued for `status`."""
        rows, following = await self._connections.fleet_page(
            status=query.status, top=query.top, continuation_token=query.continuation_token
        )
        now = self._clock.now()
        items = [fleet_view(row, now) for row in rows]
        if self._push is not None:
            statuses = await asyncio.gather(*(self._push.status(item.tenant_id) for item in items))
            items = [
                item.model_copy(update={"push": push}) for item, push in zip(items, statuses, strict=True)
            ]
        return FleetPage(items=items, continuation_token=following)


def fleet_view(connection: Connection, now: datetime) -> FleetConnection:
    """What the operator sees of one connection at `now` (push, from its own row, is added by the page)."""
    refresh_ends = connection.refresh_token_expires_at
    return FleetConnection(
        tenant_id=connection.tenant_id,
        status=connection.status,
        instance=connection.instance,
        instance_url=connection.instance_url,
        connected_at=connection.connected_at,
        access_token_expires_at=connection.access_token_expires_at,
        refresh_token_expires_at=refresh_ends,
        refresh_token_expires_soon=(
            connection.status == ConnectionStatus.CONNECTED
            and refresh_ends is not None
            and refresh_ends - now < REFRESH_TOKEN_WARNING
        ),
        last_sync_at=connection.last_sync_at,
        last_sync_started_at=connection.last_sync_started_at,
        last_sync_outcome=sync_outcome(connection, now),
        sync_in_progress=connection.sync_lease_until is not None and connection.sync_lease_until > now,
        sync_paused_until=_paused_until(connection, now),
        last_error=connection.last_error,
        updated_at=connection.updated_at,
    )


def sync_outcome(connection: Connection, now: datetime) -> SyncOutcome:
    # A successful sync (and a successful authorization) clears `last_error`, so an error on the
    # row is news since the last success.
    if _paused_until(connection, now) is not None:
        return "paused"
    if connection.last_error:
        return "failed"
    return "succeeded" if connection.last_sync_at is not None else "never"


def _paused_until(connection: Connection, now: datetime) -> datetime | None:
    # A pause that has run out is no pause: the timer queues the tenant again.
    until = connection.sync_not_before
    return until if until is not None and until > now else None
