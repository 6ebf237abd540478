"""The sync's lag: from a record's `sys_updated_on` to the run that first lists that version of it
(`connector.sync.lag`). A version is new to a run when it is newer than the table's watermark as
the run started; a table never listed before has no lag to measure (its first listing is the
backfill of every record, however old)."""

from __future__ import annotations

from collections.abc import Iterable

from shared import telemetry
from shared.clock import Clock
from shared.ports import TicketStore
from shared.services.sync_apply import LazyIndex
from shared.services.sync_marks import Record, parse_glide
from shared.services.sync_rows import RowWriter, listed


class LagMeasuringRows(RowWriter):
    """The run's row writer, which also measures the lag of each change it is handed."""

    def __init__(
        self, tickets: TicketStore, tenant_id: str, index: LazyIndex, clock: Clock, watermarks: dict[str, str]
    ) -> None:
        super().__init__(tickets, tenant_id, index, clock)
        self._watermarks = dict(watermarks)
        self._now = clock.now

    async def add(self, table: str, records: Iterable[Record]) -> None:
        batch = list(records)
        if telemetry.enabled():
            self._measure(table, batch)
        await super().add(table, batch)

    def _measure(self, table: str, batch: list[Record]) -> None:
        mark = self._watermarks.get(table)
        if not mark:
            return
        now = self._now()
        for record in batch:
            item = listed(table, record)
            if item is None or item.updated <= mark:
                continue
            updated = parse_glide(item.updated)
            if updated is not None:
                telemetry.sync_lag((now - updated).total_seconds())
