"""Dict-backed `connections` and `oauthstates` tables for unit tests (`ConnectionStore`,
`OAuthStateStore`).

Same contract as the Table Storage repositories: every write hands out a new ETag, `replace` and
`consume` refuse a stale one with `PreconditionFailed`, `add` refuses an existing state id, and
`update` reads, applies its change and writes back with the ETag, reading and applying it again
after a lost race. A row a test puts straight into `rows` is a write by someone else: it gets a new
ETag too. `lose_next_write` lets a test make a conditional write lose such a race.
"""

from __future__ import annotations

import itertools
from collections import UserDict
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypeVar

from shared.errors import PreconditionFailed
from shared.models import ConnectionStatus
from shared.ports import ConnectionStore, OAuthStateStore
from shared.records import Connection, OAuthState, StoredRecord

_etags = (f'W/"{n}"' for n in itertools.count(1))
Row = TypeVar("Row", bound=StoredRecord)
Change = Callable[[Connection], dict[str, Any]]


class Rows(UserDict[str, Row]):
    """Rows by key; storing one gives it a new ETag, as every write to the table does."""

    def __setitem__(self, key: str, row: Row) -> None:
        super().__setitem__(key, row.model_copy(update={"etag": next(_etags)}))


class InMemoryConnectionRepository:
    def __init__(self) -> None:
        self.rows: Rows[Connection] = Rows()
        self.watchers: list[Callable[[Connection], None]] = []  # told of every row written here
        self._races: dict[str, list[Change]] = {}

    def lose_next_write(self, tenant_id: str, change: Change) -> None:
        """The next conditional write of the tenant's row loses a race: another writer applies
        `change` to the row between that write's read and the write itself."""
        self._races.setdefault(tenant_id, []).append(change)

    async def get(self, tenant_id: str) -> Connection | None:
        return self.rows.get(tenant_id)

    async def recent(self, tenant_id: str) -> Connection | None:
        return self.rows.get(tenant_id)  # one process: every write is seen at once

    async def put(self, connection: Connection) -> Connection:
        return self._write(connection)

    async def replace(self, connection: Connection) -> Connection:
        if connection.etag is None:
            raise ValueError("replace needs a connection read from the table (with its ETag)")
        self._run_race(connection.tenant_id)
        current = self.rows.get(connection.tenant_id)
        if current is None or current.etag != connection.etag:
            raise PreconditionFailed()
        return self._write(connection)

    async def update(
        self, tenant_id: str, change: Callable[[Connection], dict[str, Any]], *, attempts: int = 3
    ) -> Connection | None:
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
        self.rows.pop(tenant_id, None)

    async def with_status(self, status: ConnectionStatus) -> AsyncIterator[Connection]:
        for connection in list(self.rows.values()):
            if connection.status == status:
                yield connection

    def _write(self, connection: Connection) -> Connection:
        self.rows[connection.tenant_id] = connection
        saved = self.rows[connection.tenant_id]
        for watcher in list(self.watchers):
            watcher(saved)
        return saved

    def _run_race(self, tenant_id: str) -> None:
        races = self._races.get(tenant_id)
        current = self.rows.get(tenant_id)
        if races and current is not None:
            self.rows[tenant_id] = current.model_copy(update=races.pop(0)(current))


class InMemoryOAuthStateRepository:
    def __init__(self) -> None:
        self.rows: Rows[OAuthState] = Rows()

    async def add(self, state: OAuthState) -> None:
        if state.state_id in self.rows:
            raise PreconditionFailed()
        self.rows[state.state_id] = state

    async def get(self, state_id: str) -> OAuthState | None:
        return self.rows.get(state_id)

    async def consume(self, state: OAuthState, at: datetime) -> OAuthState:
        if state.etag is None:
            raise ValueError("consume needs a state read from the table (with its ETag)")
        current = self.rows.get(state.state_id)
        if current is None or current.etag != state.etag:
            raise PreconditionFailed()
        self.rows[state.state_id] = state.model_copy(update={"consumed_at": at})
        return self.rows[state.state_id]

    async def delete_expired(self, before: datetime, *, limit: int = 1000) -> int:
        expired = [key for key, state in self.rows.items() if state.expires_at < before][: max(0, limit)]
        for key in expired:
            del self.rows[key]
        return len(expired)


def _conforms(connections: InMemoryConnectionRepository, states: InMemoryOAuthStateRepository) -> None:
    # mypy checks here that the fakes implement the ports.
    _connections: ConnectionStore = connections
    _states: OAuthStateStore = states
