"""Where the sync's state changes go: our ticket rows, found by the record's `correlation_id`,
which is our ticket id and so the row's RowKey in the tenant's partition (policy: `syncing.py`).

The changes of a run are gathered across its tables and written in transactions of up to 50 rows
(one partition), oldest listed first: each row's merge takes its timeline event along (an
upsert-merge of the event row keyed by ticket, `sys_updated_on` and `sys_mod_count`, in the same
transaction: the row is never moved without its event, nor the event written without the row).
Two ways to decide what to write:

- **Blind** (a normal run): every record of ours that the run listed and had not handled before
  (its version is not in the watermark's seen set) is a merge of `State`, `StateUpdatedAt`,
  `ServicenowUpdatedOn` and `ServicenowModCount` into the row its correlation id names. No row
  is read. The merge carries `If-Match: *`: it updates a row that exists and never makes one,
  so a deleted row is never brought back. A correlation id that is not of our ids' shape is not ours and is skipped.
- **Exact**, once the run has read the tenant's ticket index (`LazyIndex`): a record is written
  only when its table and sys_id are our row's and its state differs from the row's. The daily
  reconciliation reads the index anyway; a normal run reads it when a transaction fails because
  one of its rows does not exist (a record of another tenant sharing the instance, a row not
  stored yet; nothing of that transaction was written), or when one correlation id comes with
  two different records (a copy: only one is ours). That transaction and the rest of the run are
  then decided exactly; a row that vanishes between the read and the write is skipped.

What the blind way gives up: a record whose last version the run cannot compare (not in the seen
set) is written though only something else changed (a work note): its state stays, its
`StateUpdatedAt` moves to that update's time, and its event (the state before, again) is left
out of the timeline when it is read (`ticket_events.py`). A copy of one of our records that still
carries our ticket id is written over our row when it is listed alone (until the next
reconciliation repairs the row, as it repairs any state a normal run got wrong).

Why an unconditional merge never puts an older state over a newer one (but for a push, below):

- Within a run, records are listed oldest first (`sys_updated_on`, keyset-paged) and a later
  version of a record replaces its pending change; transactions go one after another. So each row's
  last write in a run is the newest version the run listed.
- Between runs, the lease (`sync_lease.py`, ETag-conditional) lets one run of a tenant work at a
  time. A run lists ServiceNow only after it holds the lease, and the run before released it only
  after its last row write (the rows are written before the finishing status write). So whatever
  a run writes was read from ServiceNow after the previous run's writes ended: it is never older.
  A lease outlives the host's function timeout (10 minutes): a run whose lease ran out has been
  stopped before another may take the lease.
- A push (ServiceNow calling us, `ticket_pushes.py`) writes them too, ETag-conditionally and only
  with a newer `sys_mod_count` than the row holds. A run that listed a version before a push wrote
  a newer one may merge the older state over it, for a while: the newer version is not the one
  the run recorded as seen, so the next run lists it again (past the watermark, or within its
  look-back) and writes it. The event rows are not undone by this (each version has its own), and
  the timeline orders them by ServiceNow's time.
- The other writer of these columns is ticket creation, when it stores a row (a record listed
  before its row exists is skipped, and repaired by the reconciliation if its state moved
  meanwhile) or finishes a `creating` one with the state ServiceNow answered the create with (an
  ETag-conditional replace: a merge of ours landing between its read and its write makes it lose
  once, and that completion round, or that repeat of the create, is tried again; a newer state of
  ours it replaces is repaired by the reconciliation, as when the sync passed `creating` rows by).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from shared.clock import Clock
from shared.ports import TicketStore
from shared.records import TICKET_ID, TicketStateChange
from shared.services.sync_apply import Index, LazyIndex
from shared.services.sync_marks import Record, parse_glide, record_sys_id, record_updated

logger = logging.getLogger(__name__)

MAX_BATCH = 50  # rows a transaction: each takes its event along (Table Storage's limit is 100)


@dataclass(frozen=True)
class Listed:
    """One version of a record of ours, as the listing showed it."""

    ticket_id: str  # its correlation id
    table: str
    sys_id: str
    state: str
    updated: str  # sys_updated_on
    mod_count: int | None = None  # sys_mod_count: None when ServiceNow did not send a number


def listed(table: str, record: Record) -> Listed | None:
    """The record as a change of ours; None when its correlation id is not one of our ids."""
    ticket_id = str(record.get("correlation_id", ""))
    if not TICKET_ID.match(ticket_id):
        return None
    state, updated = str(record.get("state", "")), record_updated(record)
    return Listed(ticket_id, table, record_sys_id(record), state, updated, _mod_count(record))


def _mod_count(record: Record) -> int | None:
    try:
        return int(str(record.get("sys_mod_count", "")))
    except ValueError:
        return None


class RowWriter:
    """One run's state changes, gathered across its tables and written 100 at a time."""

    def __init__(self, tickets: TicketStore, tenant_id: str, index: LazyIndex, clock: Clock) -> None:
        self._tickets = tickets
        self._tenant_id = tenant_id
        self._index = index
        self._clock = clock
        self._pending: dict[tuple[str, str, str], Listed] = {}  # by ticket id, table and sys_id
        self._records: dict[str, tuple[str, str]] = {}  # ticket id -> the first (table, sys_id) listed
        self._doubt = False  # one correlation id came with two records: compare with our rows
        self.written: Counter[str] = Counter()  # rows written, by table
        self.written_ids: set[str] = set()  # the ticket ids of those rows
        self.failed = False  # a write raised: what it held may not be written

    async def add(self, table: str, records: Iterable[Record]) -> None:
        """Note the changes `records` bring; write whole transactions as they fill up."""
        for record in records:
            item = listed(table, record)
            if item is None:
                continue  # not one of our ids: a record of this connector made by someone else
            if self._records.setdefault(item.ticket_id, (table, item.sys_id)) != (table, item.sys_id):
                self._doubt = True
            key = (item.ticket_id, table, item.sys_id)
            self._pending.pop(key, None)  # a newer version of the record goes after the others
            self._pending[key] = item
        while len(self._pending) >= MAX_BATCH:
            await self._write(self._take())

    async def flush(self) -> None:
        """Write every change still pending."""
        while self._pending:
            await self._write(self._take())

    def _take(self) -> list[Listed]:
        keys = list(self._pending)[:MAX_BATCH]
        return [self._pending.pop(key) for key in keys]

    async def _write(self, items: list[Listed]) -> None:
        try:
            if not (self._doubt or self._index.loaded):
                changes = [self._change(item) for item in items]
                missing = await self._tickets.merge_states(self._tenant_id, changes)
                if missing is None:
                    self.written.update(item.table for item in items)
                    self.written_ids.update(item.ticket_id for item in items)
                    return
                logger.info("Ticket row %s does not exist: comparing with our rows from now on", missing)
            await self._write_exact(items, await self._index.get())
        except BaseException:
            self.failed = True
            raise

    async def _write_exact(self, items: list[Listed], index: Index) -> None:
        chosen: dict[str, Listed] = {}
        for item in items:
            entry = index.get(item.ticket_id)
            if entry is None or entry.type != item.table or entry.sys_id != item.sys_id:
                continue  # not one of this tenant's tickets (another tenant may share the instance)
            if item.state == entry.state:
                continue  # something other than the state changed (a work note, say)
            chosen[item.ticket_id] = item
            index[item.ticket_id] = replace(entry, state=item.state)
        if not chosen:
            return
        result = await self._tickets.apply_state_changes(
            self._tenant_id, [self._change(item) for item in chosen.values()]
        )
        if result.missing:
            logger.info("%d ticket row(s) vanished while syncing", len(result.missing))
        gone = set(result.missing)
        self.written.update(item.table for item in chosen.values() if item.ticket_id not in gone)
        self.written_ids.update(ticket_id for ticket_id in chosen if ticket_id not in gone)

    def _change(self, item: Listed) -> TicketStateChange:
        return TicketStateChange(
            ticket_id=item.ticket_id,
            state=item.state,
            state_updated_at=parse_glide(item.updated) or self._clock.now(),
            servicenow_updated_on=item.updated or None,
            mod_count=item.mod_count,
            seen_at=self._clock.now(),
        )
