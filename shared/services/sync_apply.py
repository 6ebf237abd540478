"""What the daily reconciliation does besides the listing: finds the tickets whose record was
deleted in ServiceNow, and reads the instance's own state labels; and the ticket index a run reads
when it compares records with our rows (policy: `syncing.py`; the state writes: `sync_rows.py`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.clock import Clock
from shared.errors import AppError
from shared.ports import ServiceNowRecords, TicketStore
from shared.records import Connection, TicketSyncEntry
from shared.services.sync_marks import Record
from shared.services.sync_pull import FIELDS
from shared.ticket_states import TICKET_TABLES, StateLabels, labels_from_choices

if TYPE_CHECKING:
    from shared.services.sync_rows import RowWriter

logger = logging.getLogger(__name__)

SYS_ID_CHUNK = 100  # sys_idIN lists: 100 ids of 32 characters keep the URL well under 8 KB
Index = dict[str, TicketSyncEntry]  # our tickets by id


class LazyIndex:
    """Our ticket rows are read at most once per sync, and only when a run compares records with them."""

    def __init__(self, load: Callable[[], Awaitable[Index]]) -> None:
        self._load = load
        self._index: Index | None = None

    @property
    def loaded(self) -> bool:
        return self._index is not None

    async def get(self) -> Index:
        if self._index is None:
            self._index = await self._load()
        return self._index


class Reconciler:
    def __init__(
        self, *, tickets: TicketStore, records: ServiceNowRecords, deletion_grace: timedelta, clock: Clock
    ) -> None:
        self._tickets = tickets
        self._records = records
        self._deletion_grace = deletion_grace
        self._clock = clock

    async def reconcile(
        self,
        connection: Connection,
        table: str,
        listed: set[str],
        index: LazyIndex,
        rows: RowWriter,
        started: datetime,
    ) -> int:
        """Mark our tickets whose record is gone; a record merely missing from the listing is kept
        (and its state repaired, through `rows`). `listed`: the sys_ids of the full listing. The
        number marked."""
        entries = await index.get()
        suspects = _suspects(entries, table, listed, started - self._deletion_grace)
        if not suspects:
            return 0
        still_there = await self._look_up(connection, table, sorted(suspects))
        await rows.add(table, still_there)
        present = {str(record.get("sys_id", "")) for record in still_there}
        gone = [entry.ticket_id for sys_id, entry in sorted(suspects.items()) if sys_id not in present]
        if gone:
            await self._tickets.mark_deleted(connection.tenant_id, gone, self._clock.now())
            logger.info("%d %s ticket(s) were deleted in ServiceNow; marked as deleted", len(gone), table)
        return len(gone)

    async def _look_up(self, connection: Connection, table: str, sys_ids: list[str]) -> list[Record]:
        found: list[Record] = []
        for start in range(0, len(sys_ids), SYS_ID_CHUNK):
            query = f"sys_idIN{','.join(sys_ids[start : start + SYS_ID_CHUNK])}^ORDERBYsys_id"
            async for page in self._records.query(connection, table, query, FIELDS, page_size=SYS_ID_CHUNK):
                found.extend(page)
        return found


def _suspects(entries: Index, table: str, listed: set[str], cutoff: datetime) -> dict[str, TicketSyncEntry]:
    """Our live tickets of `table` missing from the listing, by sys_id; not those younger than
    `cutoff` (their record may be newer than the listing)."""
    return {
        entry.sys_id: entry
        for entry in entries.values()
        if entry.type == table
        and entry.sys_id
        and not entry.deleted
        and entry.sys_id not in listed
        and (entry.created_at is None or entry.created_at < cutoff)
    }


async def instance_state_labels(records: ServiceNowRecords, connection: Connection) -> StateLabels | None:
    """The instance's own state labels, read with the daily reconciliation (one request).

    Best effort: the defaults serve until they can be read, so a failure here fails no sync.
    """
    query = f"nameIN{','.join(TICKET_TABLES)}^element=state^language=en^ORDERBYsequence"
    try:
        rows = await records.page(connection, "sys_choice", query, ["name", "value", "label"])
    except AppError as error:
        logger.warning("Could not read the instance's state labels: %s", error.message)
        return None
    return labels_from_choices(rows)
