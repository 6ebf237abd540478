"""Repositories for the `connections` and `oauthstates` tables.

A ticket create needs the tenant's connection row and nothing else from it but its instance,
client and grant, so `ConnectionRepository.recent` serves it from memory for a few seconds: one
Table Storage request fewer on every warm create. What this process writes it sees at once (every
write replaces or drops its cached row); a write by another process (a re-authorization, a
removal) is seen here within `CONNECTION_CACHE_TTL_S`. A create sent meanwhile goes to the
instance the row named when it was read, with that grant's token, as one that started a moment
earlier would. Every other reader (provisioning, the sync, the completion worker) reads the row.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

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
    storage_errors,
    to_entity,
    upsert_entity,
)
from shared.stores.tickets import decode_continuation, encode_continuation
from shared.stores.ttl_cache import TtlCache

CONNECTIONS = "connections"
OAUTH_STATES = "oauthstates"
CONNECTION_ROW = "servicenow"
STATE_ROW = "state"
_CONNECTION_JSON = frozenset({"StateNames", "InstanceStateLabels", "Watermarks"})
CONNECTION_CACHE_TTL_S = 10.0
T = TypeVar("T")


class ConnectionRepository:
    def __init__(
        self,
        store: TableStore,
        *,
        cache_ttl: float = CONNECTION_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._recent: TtlCache[Connection] = TtlCache(cache_ttl, clock=clock)

    async def get(self, tenant_id: str) -> Connection | None:
        generation = self._recent.generation(tenant_id)
        table = await self._store.table(CONNECTIONS)
        entity = await get_entity(table, tenant_id, CONNECTION_ROW)
        if entity is None:
            self._recent.invalidate(tenant_id)  # removed elsewhere: forget it here too
            return None
        connection = from_entity(Connection, entity, _CONNECTION_JSON)
        self._recent.put_if_current(tenant_id, connection, generation)
        return connection

    async def recent(self, tenant_id: str) -> Connection | None:
        """The row as last read or written here within `CONNECTION_CACHE_TTL_S`, else read."""
        return self._recent.get(tenant_id) or await self.get(tenant_id)

    async def put(self, connection: Connection) -> Connection:
        """Write unconditionally (a new configuration replaces the old one)."""
        table = await self._store.table(CONNECTIONS)
        entity = to_entity(connection, connection.tenant_id, CONNECTION_ROW)
        return self._written(
            connection, await self._writing(connection.tenant_id, upsert_entity(table, entity))
        )

    async def replace(self, connection: Connection) -> Connection:
        """Write only if the row is unchanged since it was read; PreconditionFailed otherwise."""
        if connection.etag is None:
            raise ValueError("replace needs a connection read from the table (with its ETag)")
        table = await self._store.table(CONNECTIONS)
        entity = to_entity(connection, connection.tenant_id, CONNECTION_ROW)
        write = replace_entity(table, entity, connection.etag)
        return self._written(connection, await self._writing(connection.tenant_id, write))

    async def _writing(self, tenant_id: str, write: Awaitable[T]) -> T:
        """Forget the remembered row before the write and after it, whatever its outcome: a read
        that overlapped the write cannot put the old row back."""
        self._recent.invalidate(tenant_id)
        try:
            return await write
        finally:
            self._recent.invalidate(tenant_id)

    def _written(self, connection: Connection, etag: str) -> Connection:
        stored = connection.model_copy(update={"etag": etag})
        tenant_id = connection.tenant_id
        self._recent.put_if_current(tenant_id, stored, self._recent.generation(tenant_id))
        return stored

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
        await self._writing(tenant_id, delete_entity(table, tenant_id, CONNECTION_ROW))

    async def with_status(self, status: ConnectionStatus) -> AsyncIterator[Connection]:
        table = await self._store.table(CONNECTIONS)
        async for entity in query(table, "Status eq @status", {"status": status.value}):
            yield from_entity(Connection, entity, _CONNECTION_JSON)

    async def fleet_page(
        self, *, status: ConnectionStatus | None, top: int, continuation_token: str | None
    ) -> tuple[list[Connection], str | None]:
        """One page of every tenant's connection (a query across partitions), and the next token.
        A token names the `status` it was issued for, so it cannot resume another filter."""
        scope = f"fleet:{status.value if status else '*'}"
        resume = decode_continuation(continuation_token, scope) if continuation_token else None
        query_filter = "RowKey eq @row" + (" and Status eq @status" if status else "")
        parameters = {"row": CONNECTION_ROW, **({"status": status.value} if status else {})}
        table = await self._store.table(CONNECTIONS)
        with storage_errors(f"list {CONNECTIONS}"):
            entities = table.query_entities(query_filter, parameters=parameters, results_per_page=top)
            pages = entities.by_page(continuation_token=resume)  # type: ignore[arg-type]  # a dict
            rows: list[Connection] = []
            async for page in pages:
                rows = [from_entity(Connection, entity, _CONNECTION_JSON) async for entity in page]
                break
            following: Any = getattr(pages, "continuation_token", None)
        return rows, encode_continuation(following, scope) if following else None


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
