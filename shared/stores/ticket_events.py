"""A ticket's timeline in the `tickets` table (`shared.timeline_ports`): reading it, recording a
note we sent, and the states ServiceNow pushes (`ticket_pushes.py`). Row keys: `event_rows.py`.

At most `TIMELINE_LIMIT` events are kept per ticket, the newest: a read asks for one more than
its limit, and when that one exists (the answer is `truncated`) it deletes up to `TRIM_BATCH` of
the oldest beyond the limit, best effort. Writes never read, so a ticket may hold more between
two reads of its timeline; a read never shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from azure.data.tables import UpdateMode

from shared.clock import Clock
from shared.errors import AppError
from shared.stores.event_rows import note_event, prefix_end, stored_event
from shared.stores.tables import TableStore, delete_matching, storage_errors
from shared.stores.ticket_pushes import apply_pushed
from shared.stores.ticket_state_rows import TICKETS
from shared.timeline_models import NoteEvent, PushedState, StoredEvent

logger = logging.getLogger(__name__)

TRIM_BATCH = 100  # the oldest events one read deletes past the limit


class TicketEventRepository:
    def __init__(self, store: TableStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def events(self, tenant_id: str, ticket_id: str, *, limit: int) -> tuple[list[StoredEvent], bool]:
        """The newest `limit` events, newest first (one partition range query), and whether older
        ones exist; those are trimmed then."""
        table = await self._store.table(TICKETS)
        keys: list[str] = []
        found: list[StoredEvent] = []
        with storage_errors(f"list {TICKETS}"):
            async for entity in table.query_entities(
                "PartitionKey eq @tenant and RowKey gt @low and RowKey lt @high",
                parameters={"tenant": tenant_id, "low": f"e~{ticket_id}~", "high": prefix_end(ticket_id)},
                results_per_page=limit + 1,
            ):
                keys.append(str(entity["RowKey"]))
                if len(keys) > limit:
                    break
                event = stored_event(entity)
                if event is not None:
                    found.append(event)
        truncated = len(keys) > limit
        if truncated:
            await self._trim(tenant_id, ticket_id, keys[limit - 1])
        return found, truncated

    async def record_note(self, tenant_id: str, ticket_id: str, note: NoteEvent) -> None:
        table = await self._store.table(TICKETS)
        with storage_errors(f"write {TICKETS}"):
            await table.upsert_entity(note_event(tenant_id, ticket_id, note), mode=UpdateMode.MERGE)

    async def apply_pushed(self, tenant_id: str, changes: Sequence[PushedState]) -> int:
        return await apply_pushed(self._store, self._clock, tenant_id, changes)

    async def _trim(self, tenant_id: str, ticket_id: str, last_kept: str) -> None:
        """Delete up to `TRIM_BATCH` events older than the newest `limit`; a failure fails no read."""
        table = await self._store.table(TICKETS)
        parameters: dict[str, Any] = {"tenant": tenant_id, "low": last_kept, "high": prefix_end(ticket_id)}
        try:
            deleted = await delete_matching(
                table,
                "PartitionKey eq @tenant and RowKey gt @low and RowKey lt @high",
                parameters,
                limit=TRIM_BATCH,
            )
        except AppError as error:
            logger.warning("Could not trim the timeline of ticket %s: %s", ticket_id, error.message)
            return
        logger.info("Trimmed %d old event(s) of ticket %s", deleted, ticket_id)
