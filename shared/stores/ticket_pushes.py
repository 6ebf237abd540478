"""States ServiceNow pushes to us, written into our ticket rows (`PushedStates.apply_pushed`).

A push may arrive late, twice, or after the sync already wrote a newer version, so unlike the
sync's blind merge each row is read first and written only when the push is about its record and
newer (`timeline_models.push_applies`: `sys_mod_count` counts the record's versions). The write
is ETag-conditional and carries the version's event (`SeenByPushAt`; the sync's poll writes the
same event key with `SeenByPollAt`) in the same transaction; when the row changed since the read
it is read once more and decided again. Of several changes to one ticket the newest is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from shared.clock import Clock
from shared.records import TICKET_ID
from shared.stores.event_rows import pushed_event
from shared.stores.tables import TableStore, get_entity, storage_errors
from shared.stores.ticket_state_rows import TICKETS, failed_condition
from shared.timeline_models import PushedState, RowFacts, glide_instant, push_applies

logger = logging.getLogger(__name__)

ATTEMPTS = 2  # the read and write, and once more after a lost race


async def apply_pushed(
    store: TableStore, clock: Clock, tenant_id: str, changes: Sequence[PushedState]
) -> int:
    newest: dict[str, PushedState] = {}
    for change in changes:
        held = newest.get(change.ticket_id)
        if TICKET_ID.match(change.ticket_id) and (held is None or change.mod_count > held.mod_count):
            newest[change.ticket_id] = change
    table = await store.table(TICKETS)
    written = 0
    for change in newest.values():
        written += await _apply_one(table, clock, tenant_id, change)
    return written


async def _apply_one(table: TableClient, clock: Clock, tenant_id: str, change: PushedState) -> int:
    for _ in range(ATTEMPTS):
        entity = await get_entity(table, tenant_id, change.ticket_id)
        if entity is None or not push_applies(row_facts(entity), change):
            return 0
        etag = getattr(entity, "metadata", {}).get("etag")
        now = clock.now()
        at = glide_instant(change.updated) or now
        row = {
            "PartitionKey": tenant_id,
            "RowKey": change.ticket_id,
            "State": change.state,
            "StateUpdatedAt": at,
            "ServicenowUpdatedOn": change.updated,
            "ServicenowModCount": change.mod_count,
        }
        conditional = {
            "mode": UpdateMode.MERGE,
            "etag": etag,
            "match_condition": MatchConditions.IfNotModified,
        }
        operations: list[Any] = [
            ("update", row, conditional),
            ("upsert", pushed_event(tenant_id, change, at, now), {"mode": UpdateMode.MERGE}),
        ]
        with storage_errors(f"update {TICKETS}"):
            try:
                await table.submit_transaction(operations)
            except TableTransactionError as error:
                failed = failed_condition(error)
                if failed == "missing":
                    return 0  # deleted since the read
                if failed != "changed":
                    raise
                continue  # written since the read: read it again and decide again
        return 1
    logger.info("Ticket row %s kept changing; its pushed state was not written", change.ticket_id)
    return 0


def row_facts(entity: Mapping[str, Any]) -> RowFacts:
    mod_count = entity.get("ServicenowModCount")
    return RowFacts(
        status=str(entity.get("Status") or "created"),  # rows older than the column
        table=str(entity.get("Type") or ""),
        sys_id=str(entity.get("SysId") or ""),
        mod_count=mod_count if isinstance(mod_count, int) and not isinstance(mod_count, bool) else None,
    )
