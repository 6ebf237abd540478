"""One table of one tenant's sync: list what changed since the watermark (or everything, to
reconcile), hand the new states to the run's writer (`sync_rows.py`), mark deleted records, and
work out the next watermark (policy: `syncing.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.clock import Clock
from shared.ports import ServiceNowRecords, TicketStore
from shared.records import Connection
from shared.services.sync_apply import LazyIndex, Reconciler
from shared.services.sync_config import SyncConfig
from shared.services.sync_marks import (
    SEEN_SUFFIX,
    Record,
    Version,
    format_glide,
    format_seen,
    parse_seen,
    record_sys_id,
    record_version,
    seconds_before,
    seen_window,
)
from shared.services.sync_pull import KeysetPull
from shared.services.sync_rows import RowWriter

WATERMARK_CEILING = timedelta(hours=1)
EMPTY_TABLE_MARK = "1970-01-01 00:00:00"  # listed, nothing of ours in it yet


@dataclass
class TableOutcome:
    table: str
    pages: int = 0  # ServiceNow requests made for the table's listing
    records: int = 0
    changed: int = 0  # rows written (once the run's changes are written: they are gathered across tables)
    deleted: int = 0
    reconciled: bool = False


class TableSync:
    def __init__(
        self, *, tickets: TicketStore, records: ServiceNowRecords, config: SyncConfig, clock: Clock
    ) -> None:
        self._records = records
        self._config = config
        self._reconciler = Reconciler(
            tickets=tickets, records=records, deletion_grace=config.deletion_grace, clock=clock
        )

    async def sync(
        self,
        connection: Connection,
        table: str,
        rows: RowWriter,
        index: LazyIndex,
        *,
        reconcile: bool,
        started: datetime,
    ) -> tuple[TableOutcome, dict[str, str]]:
        """List `table` and hand what changed to `rows`; its outcome and its new marks (watermark and
        seen-set), to save once `rows` has written them."""
        outcome = TableOutcome(table, reconciled=reconcile)
        mark = connection.watermarks.get(table) or ""
        # Not trusted when reconciling: that run is the repair for whatever a normal run got wrong.
        seen = (
            parse_seen(connection.watermarks.get(table + SEEN_SUFFIX), mark) if mark and not reconcile else {}
        )
        lower = None if reconcile or not mark else seconds_before(mark, self._config.look_back)
        observed: dict[str, Version] = {}  # every record listed, in its newest version
        if reconcile:
            await index.get()  # the daily run compares every record with our rows
        pull = KeysetPull(self._records, connection, table, self._config)
        async for page in pull.pages(lower):
            outcome.records += len(page)
            await rows.add(table, _not_handled(page, seen, observed))
        outcome.pages = pull.requests
        if reconcile:
            outcome.deleted = await self._reconciler.reconcile(
                connection, table, set(observed), index, rows, started
            )
        return outcome, self._marks(table, mark, observed, reconcile=reconcile, started=started)

    def _marks(
        self, table: str, mark: str, observed: dict[str, Version], *, reconcile: bool, started: datetime
    ) -> dict[str, str]:
        # A record dated far in the future (a wrong clock on the instance) must not carry the
        # watermark past every normal update to come: it stops an hour ahead of our clock.
        ceiling = format_glide(started + WATERMARK_CEILING)
        newest = max([mark, *(min(updated, ceiling) for updated, _ in observed.values())])
        if not newest and reconcile:
            # A table with none of our records yet: remember it was listed, or every run would
            # reconcile it again (and read the tenant's whole ticket index to do so).
            newest = EMPTY_TABLE_MARK
        if not newest:
            return {}
        marks = {table: newest}
        window = seen_window(observed, newest, self._config.look_back)
        if window:
            marks[table + SEEN_SUFFIX] = format_seen(window, newest)
        return marks


def _not_handled(page: list[Record], seen: dict[str, Version], observed: dict[str, Version]) -> list[Record]:
    """The records of `page` not handled by an earlier run (same time, same state), noting every
    record's newest version in `observed`."""
    fresh: list[Record] = []
    for record in page:
        sys_id, version = record_sys_id(record), record_version(record)
        if sys_id not in observed or version[0] >= observed[sys_id][0]:
            observed[sys_id] = version
        if seen.get(sys_id) != version:
            fresh.append(record)
    return fresh
