"""Repositories for the `connections` and `oauthstates` tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from shared.errors import PreconditionFailed
from shared.models import ConnectionStatus
from shared.records import Connection, OAuthState
from shared.stores.tables import (
    TableStore,
    create_entity,
    delete_entity,
    delete_matching,
    from_entity,
    get_entity,
    query,
    replace_entity,
    to_entity,
    upsert_entity,
)

CONNECTIONS = "connections"
OAUTH_STATES = "oauthstates"
CONNECTION_ROW = "servicenow"
STATE_ROW = "state"
_CONNECTION_JSON = frozenset({"StateNames", "InstanceStateLabels", "Watermarks"})


class ConnectionRepository:
    def __init__(self, store: TableStore) -> None:
        self._store = store

    async def get(self, tenant_id: str) -> Connection | None:
        table = await self._store.table(CONNECTIONS)
        entity = await get_entity(table, tenant_id, CONNECTION_ROW)
        return None if entity is None else from_entity(Connection, entity, _CONNECTION_JSON)

    async def put(self, connection: Connection) -> Connection:
        """Write unconditionally (a new configuration replaces the old one)."""
        table = await self._store.table(CONNECTIONS)
        etag = await upsert_entity(table, to_entity(connection, connection.tenant_id, CONNECTION_ROW))
        return connection.model_copy(update={"etag": etag})

    async def replace(self, connection: Connection) -> Connection:
        """Write only if the row is unchanged since it was read; PreconditionFailed otherwise."""
        if connection.etag is None:
            raise ValueError("replace needs a connection read from the table (with its ETag)")
        table = await self._store.table(CONNECTIONS)
        entity = to_entity(connection, connection.tenant_id, CONNECTION_ROW)
        etag = await replace_entity(table, entity, connection.etag)
        return connection.model_copy(update={"etag": etag})

    async def update(
        self, tenant_id: str, change: Callable[[Connection], dict[str, Any]], *, attempts: int = 3
    ) -> Connection | None:
        """Read, change and write back with the row's ETag; on a lost race re-read and apply again.

        `change` gets the current row and returns the fields to set ({} to leave the row as it is).
        None when there is no row.
        """
        for attempt in range(1, attempts + 1):
            current = await self.get(tenant_id)
            if current is None:
                return None
            fields = change(current)
            if not fields:
                return current
            try:
                return await self.replace(current.model_copy(update=fields))
            except PreconditionFailed:
                if attempt == attempts:
                    raise
        return None

    async def delete(self, tenant_id: str) -> None:
        table = await self._store.table(CONNECTIONS)
        await delete_entity(table, tenant_id, CONNECTION_ROW)

    async def with_status(self, status: ConnectionStatus) -> AsyncIterator[Connection]:
        table = await self._store.table(CONNECTIONS)
        async for entity in query(table, "Status eq @status", {"status": status.value}):
            yield from_entity(Connection, entity, _CONNECTION_JSON)


class OAuthStateRepository:
    def __init__(self, store: TableStore) -> None:
        self._store = store

    async def add(self, state: OAuthState) -> None:
        table = await self._store.table(OAUTH_STATES)
        await create_entity(table, to_entity(state, state.state_id, STATE_ROW))

    async def get(self, state_id: str) -> OAuthState | None:
        table = await self._store.table(OAUTH_STATES)
        entity = await get_entity(table, state_id, STATE_ROW)
        return None if entity is None else from_entity(OAuthState, entity, frozenset())

    async def consume(self, state: OAuthState, at: datetime) -> OAuthState:
        """Mark the state used, only if nobody else did first (ETag); PreconditionFailed otherwise."""
        if state.etag is None:
            raise ValueError("consume needs a state read from the table (with its ETag)")
        table = await self._store.table(OAUTH_STATES)
        consumed = state.model_copy(update={"consumed_at": at})
        etag = await replace_entity(table, to_entity(consumed, state.state_id, STATE_ROW), state.etag)
        return consumed.model_copy(update={"etag": etag})

    async def delete_expired(self, before: datetime, *, limit: int = 1000) -> int:
        """Delete states that expired before `before`, at most `limit` of them; returns how many.

        States are partitioned by their own id, so this is a query across partitions (a table
        scan); it stays cheap because this cleanup keeps the table small. A row that is already
        gone is not an error.
        """
        table = await self._store.table(OAUTH_STATES)
        return await delete_matching(table, "ExpiresAt lt @cutoff", {"cutoff": before}, limit=limit)
