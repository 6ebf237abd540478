"""The repository of the `idempotency` table: one claim per tenant and Idempotency-Key hash.

IdempotencyRepository
    claim(record)   conditional insert; PreconditionFailed when the key is taken
    get(tenant_id, key_hash)
    replace(record) ETag-conditional write (lease takeover, completion)
    release(record) ETag-conditional delete (ServiceNow refused the create, and no create of
                    the claim may have made a record: the key is free)
    delete_expired(before, limit)
                    delete claims made before `before`, at most `limit` (a query across
                    partitions; the timer's housekeeping keeps it small)
    stale_in_progress(written_before, created_after, limit)
                    deferred claims in progress nobody wrote lately (the table's own
                    `Timestamp`), for the timer's sweep of lost `ticket-creates` messages
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from shared.records import IdempotencyRecord
from shared.stores.tables import (
    TableStore,
    create_entity,
    delete_entity,
    delete_matching,
    from_entity,
    get_entity,
    replace_entity,
    storage_errors,
    to_entity,
)

IDEMPOTENCY = "idempotency"
# Claims made before this date carry no `Deferred`: the sweep lists every one of them in progress,
# as it listed all claims then (the clause selects nothing once they are past the sweep's horizon).
DEFERRED_SINCE = datetime(2026, 12, 2, tzinfo=UTC)
_KEY_HASH = re.compile(r"^[0-9a-f]{64}$")


class IdempotencyRepository:
    def __init__(self, store: TableStore) -> None:
        self._store = store

    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord:
        """Insert the claim. PreconditionFailed when the key is already claimed (by anyone)."""
        table = await self._store.table(IDEMPOTENCY)
        etag = await create_entity(table, to_entity(record, record.tenant_id, record.key_hash))
        return record.model_copy(update={"etag": etag})

    async def get(self, tenant_id: str, key_hash: str) -> IdempotencyRecord | None:
        if not _KEY_HASH.match(key_hash):
            return None
        table = await self._store.table(IDEMPOTENCY)
        entity = await get_entity(table, tenant_id, key_hash)
        return None if entity is None else from_entity(IdempotencyRecord, entity, frozenset())

    async def replace(self, record: IdempotencyRecord) -> IdempotencyRecord:
        """Write only if nobody changed the claim since it was read; PreconditionFailed otherwise."""
        if record.etag is None:
            raise ValueError("replace needs a claim read from the table (with its ETag)")
        table = await self._store.table(IDEMPOTENCY)
        entity = to_entity(record, record.tenant_id, record.key_hash)
        etag = await replace_entity(table, entity, record.etag)
        return record.model_copy(update={"etag": etag})

    async def release(self, record: IdempotencyRecord) -> None:
        """Delete the claim if unchanged since read (PreconditionFailed otherwise)."""
        if record.etag is None:
            raise ValueError("release needs a claim read from the table (with its ETag)")
        table = await self._store.table(IDEMPOTENCY)
        await delete_entity(table, record.tenant_id, record.key_hash, etag=record.etag)

    async def delete_expired(self, before: datetime, *, limit: int = 1000) -> int:
        """Delete claims made before `before`, at most `limit` of them; returns how many.

        Claims are partitioned by tenant, so this is a query across partitions (a table scan on
        `CreatedAt`). The retention is far longer than any create runs, so a claim that old is
        never written again: it is deleted without its ETag; one already gone is not an error.
        """
        table = await self._store.table(IDEMPOTENCY)
        # A deferred claim still in progress is left alone: its `creating` ticket needs it.
        expired = "CreatedAt lt @cutoff and (Status eq 'completed' or Deferred eq false)"
        return await delete_matching(table, expired, {"cutoff": before}, limit=limit)

    async def stale_in_progress(
        self, *, written_before: datetime, created_after: datetime, limit: int
    ) -> list[IdempotencyRecord]:
        """Deferred claims in progress made after `created_after` whose last write (Table
        Storage's own `Timestamp`, moved by every write) was before `written_before`; at most
        `limit`. A claim whose create ended in its request is never deferred: not listed.

        A query across partitions, like `delete_expired`: claims of the last days only.
        """
        table = await self._store.table(IDEMPOTENCY)
        found: list[IdempotencyRecord] = []
        if limit <= 0:
            return found
        with storage_errors(f"list {IDEMPOTENCY}"):
            async for entity in table.query_entities(
                "Status eq 'in_progress' and Timestamp lt @written and CreatedAt gt @created "
                "and (Deferred eq true or CreatedAt lt @unflagged )",
                parameters={"written": written_before, "created": created_after, "unflagged": DEFERRED_SINCE},
                results_per_page=min(limit, 1000),
            ):
                found.append(from_entity(IdempotencyRecord, entity, frozenset()))
                if len(found) >= limit:
                    break
        return found
