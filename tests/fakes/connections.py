"""Dict-backed `ConnectionRepository` and `OAuthStateRepository` for unit tests.

They subclass the real repositories only so that the service's type hints accept them; every
method is overridden and no table is touched. Same contract as the Table Storage repositories: every write hands out a new ETag, `replace` and
`consume` refuse a stale one with `PreconditionFailed`, and `add` refuses an existing state id.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime

from shared.errors import PreconditionFailed
from shared.models import ConnectionStatus
from shared.records import Connection, OAuthState
from shared.stores.connections import ConnectionRepository, OAuthStateRepository

_etags = (f'W/"{n}"' for n in itertools.count(1))


class InMemoryConnectionRepository(ConnectionRepository):
    def __init__(self) -> None:  # no TableStore: nothing here reaches Table Storage
        self.rows: dict[str, Connection] = {}

    async def get(self, tenant_id: str) -> Connection | None:
        return self.rows.get(tenant_id)

    async def put(self, connection: Connection) -> Connection:
        saved = connection.model_copy(update={"etag": next(_etags)})
        self.rows[connection.tenant_id] = saved
        return saved

    async def replace(self, connection: Connection) -> Connection:
        if connection.etag is None:
            raise ValueError("replace needs a connection read from the table (with its ETag)")
        current = self.rows.get(connection.tenant_id)
        if current is None or current.etag != connection.etag:
            raise PreconditionFailed()
        return await self.put(connection)

    async def delete(self, tenant_id: str) -> None:
        self.rows.pop(tenant_id, None)

    async def with_status(self, status: ConnectionStatus) -> AsyncIterator[Connection]:
        for connection in list(self.rows.values()):
            if connection.status == status:
                yield connection


class InMemoryOAuthStateRepository(OAuthStateRepository):
    def __init__(self) -> None:  # no TableStore: nothing here reaches Table Storage
        self.rows: dict[str, OAuthState] = {}

    async def add(self, state: OAuthState) -> None:
        if state.state_id in self.rows:
            raise PreconditionFailed()
        self.rows[state.state_id] = state.model_copy(update={"etag": next(_etags)})

    async def get(self, state_id: str) -> OAuthState | None:
        return self.rows.get(state_id)

    async def consume(self, state: OAuthState, at: datetime) -> OAuthState:
        if state.etag is None:
            raise ValueError("consume needs a state read from the table (with its ETag)")
        current = self.rows.get(state.state_id)
        if current is None or current.etag != state.etag:
            raise PreconditionFailed()
        consumed = state.model_copy(update={"consumed_at": at, "etag": next(_etags)})
        self.rows[state.state_id] = consumed
        return consumed

    async def delete_expired(self, before: datetime, *, limit: int = 1000) -> int:
        expired = [key for key, state in self.rows.items() if state.expires_at < before][: max(0, limit)]
        for key in expired:
            del self.rows[key]
        return len(expired)
