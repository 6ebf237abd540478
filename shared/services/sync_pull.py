"""The sync's incremental pull: one table's records of this connector, oldest first, keyset-paged
(policy: `syncing.py`; the watermarks it starts from are in `sync_marks.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from shared.errors import UpstreamError
from shared.ports import ServiceNowRecords
from shared.records import CORRELATION_DISPLAY, Connection
from shared.services.sync_config import SyncConfig
from shared.services.sync_marks import Record, Version, record_sys_id, record_updated, record_version

FIELDS = ["sys_id", "correlation_id", "state", "sys_updated_on", "sys_mod_count"]
MAX_PAGES = 10_000  # per table and run: 10 million records; past it something is wrong
_OURS = f"correlation_display={CORRELATION_DISPLAY}"
_ORDER = "ORDERBYsys_updated_on^ORDERBYsys_id"


class KeysetPull:
    """This connector's records of one table updated at or after a given time (all of them when
    None), oldest first, a page at a time; each version of a record once.

    Keyset paging: the next page asks for `sys_updated_on>=` the newest time of the page before,
    so a record updated while we read moves to a later page instead of shifting the others past
    an offset. The boundary second's records come back and are dropped here; the next page asks
    for that many more (up to `max_page_size`). When one second fills a whole page, the rest of
    that second is read by `sys_id` and the next page starts after it.
    """

    def __init__(
        self, records: ServiceNowRecords, connection: Connection, table: str, config: SyncConfig
    ) -> None:
        self._records = records
        self._connection = connection
        self._table = table
        self._cap = max(1, config.max_page_size)
        self._size = max(1, min(config.page_size, self._cap))
        self._returned: dict[str, Version] = {}
        self.requests = 0  # ServiceNow requests made so far

    async def pages(self, lower: str | None) -> AsyncIterator[list[Record]]:
        after = f"sys_updated_on>={lower}" if lower else ""
        limit = self._size
        while True:
            page = await self._fetch("^".join(part for part in (_OURS, after, _ORDER) if part), limit)
            fresh = self._unseen(page)
            if fresh:
                yield fresh
            if len(page) < limit:
                return
            last = record_updated(page[-1])
            boundary = sum(1 for record in page if record_updated(record) == last)
            if boundary < self._cap:
                after, limit = f"sys_updated_on>={last}", min(self._cap, self._size + boundary)
                continue
            # A whole page of one second (a bulk update): read on in it by sys_id, then go past it.
            async for fresh in self._rest_of_second(last, record_sys_id(page[-1])):
                yield fresh
            after, limit = f"sys_updated_on>{last}", self._size

    async def _rest_of_second(self, second: str, last_id: str) -> AsyncIterator[list[Record]]:
        while True:
            page = await self._fetch(
                f"{_OURS}^sys_updated_on={second}^sys_id>{last_id}^ORDERBYsys_id", self._cap
            )
            fresh = self._unseen(page)
            if fresh:
                yield fresh
            if len(page) < self._cap:
                return
            if record_sys_id(page[-1]) <= last_id:
                raise UpstreamError(f"ServiceNow did not page {self._table} on by sys_id; stopped.")
            last_id = record_sys_id(page[-1])

    def _unseen(self, page: list[Record]) -> list[Record]:
        fresh = []
        for record in page:
            sys_id, version = record_sys_id(record), record_version(record)
            if self._returned.get(sys_id) != version:
                self._returned[sys_id] = version
                fresh.append(record)
        return fresh

    async def _fetch(self, query: str, limit: int) -> list[Record]:
        if self.requests >= MAX_PAGES:
            raise UpstreamError(f"ServiceNow kept paging {self._table} past {MAX_PAGES} pages.")
        self.requests += 1
        return await self._records.page(self._connection, self._table, query, FIELDS, limit=limit)
