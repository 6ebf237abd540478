"""The `push-hints` worker: a tenant's hints become one read of the named records, and the states
read are applied only where they are newer than the row's.

A hint is never trusted for what it says: the worker reads the records named, in ONE Table API
request per table (`sys_idIN...`, and only records carrying our correlation display value), and
hands what it read to the ticket store's `apply_pushed`, which writes a change only when the
record's `sys_mod_count` is newer than the row's. So a lost hint changes nothing the poll would
not (the poll finds the change), a duplicated or late one finds nothing newer, and a forged one
cannot get here (the hook checks the signature).

Coalescing: the messages this process receives for one tenant within `window` seconds of the
first become one batch: the first message's invocation waits the window, takes the batch (a
message after that starts the next one), reads and applies it; the others await its outcome, and
all of them fail with it, so the host retries each message (and then poison-queues it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shared.clock import SYSTEM_CLOCK, Clock
from shared.models import ConnectionStatus
from shared.ports import ConnectionStore, ServiceNowRecords
from shared.push_models import PushHint, PushHintMessage
from shared.push_ports import PushHooks
from shared.records import CORRELATION_DISPLAY, TICKET_ID, Connection
from shared.timeline_models import PushedState
from shared.timeline_ports import PushedStates

logger = logging.getLogger(__name__)

FIELDS = ["sys_id", "correlation_id", "state", "sys_updated_on", "sys_mod_count"]
DEFAULT_WINDOW_S = 0.25
_OURS = f"correlation_display={CORRELATION_DISPLAY}"


@dataclass
class _Batch:
    hints: dict[tuple[str, str], PushHint] = field(default_factory=dict)  # by (table, sys_id)
    pushes: int = 0  # the calls (queue messages) it holds
    last_received: datetime | None = None
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def add(self, message: PushHintMessage) -> None:
        for hint in message.hints:
            self.hints[(hint.table, hint.sys_id)] = hint
        self.pushes += 1
        if self.last_received is None or message.received_at > self.last_received:
            self.last_received = message.received_at


class PushWorker:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        records: ServiceNowRecords,
        changes: PushedStates,
        hooks: PushHooks,
        clock: Clock = SYSTEM_CLOCK,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        self._connections = connections
        self._records = records
        self._changes = changes
        self._hooks = hooks
        self._clock = clock
        self._window = window_s
        self._open: dict[str, _Batch] = {}  # tenant -> the batch still taking messages
        self.reads = 0  # Table API requests made (the benchmark and the tests read it)

    async def handle(self, message: PushHintMessage) -> int:
        """Join the tenant's batch (or start one); the rows its one read and apply changed."""
        tenant_id = message.tenant_id
        batch = self._open.get(tenant_id)
        if batch is not None:
            batch.add(message)
            return await asyncio.shield(batch.done)
        batch = _Batch()
        batch.add(message)
        self._open[tenant_id] = batch
        try:
            try:
                await self._clock.sleep(self._window)
            finally:
                self._open.pop(tenant_id, None)
            changed = await self._run(tenant_id, batch)
        except BaseException as error:
            batch.done.set_exception(error)
            batch.done.exception()  # retrieved: a batch nobody else awaited must not warn
            raise
        batch.done.set_result(changed)
        return changed

    async def _run(self, tenant_id: str, batch: _Batch) -> int:
        connection = await self._connections.recent(tenant_id)
        if connection is None or connection.status != ConnectionStatus.CONNECTED:
            logger.info("Dropping %d push hint(s): the tenant is not connected", len(batch.hints))
            return 0
        changes = await self._read(connection, batch.hints.values())
        changed = await self._changes.apply_pushed(tenant_id, changes) if changes else 0
        if batch.last_received is not None:
            await self._hooks.record_pushes(tenant_id, batch.pushes, batch.last_received)
        logger.info(
            "Push: %d call(s), %d record(s) named, %d of ours read, %d row(s) changed",
            batch.pushes,
            len(batch.hints),
            len(changes),
            changed,
        )
        return changed

    async def _read(self, connection: Connection, hints: Iterable[PushHint]) -> list[PushedState]:
        by_table: dict[str, list[str]] = {}
        for hint in hints:
            by_table.setdefault(hint.table, []).append(hint.sys_id)
        changes: list[PushedState] = []
        for table, sys_ids in sorted(by_table.items()):
            query = f"{_OURS}^sys_idIN{','.join(sorted(sys_ids))}^ORDERBYsys_id"
            self.reads += 1
            records = await self._records.page(connection, table, query, FIELDS, limit=len(sys_ids))
            wanted = set(sys_ids)
            for record in records:
                change = pushed_change(table, record)
                if change is not None and change.sys_id in wanted:
                    changes.append(change)
        return changes


def pushed_change(table: str, record: dict[str, object]) -> PushedState | None:
    """A record read as a change of ours; None when it is not ours (correlation id not one of our
    ticket ids) or unreadable."""
    ticket_id = str(record.get("correlation_id", ""))
    mod_count = str(record.get("sys_mod_count", ""))
    if not TICKET_ID.match(ticket_id) or not mod_count.isdigit():
        return None
    return PushedState(
        ticket_id=ticket_id,
        table=table,
        sys_id=str(record.get("sys_id", "")),
        state=str(record.get("state", "")),
        updated=str(record.get("sys_updated_on", "")),
        mod_count=int(mod_count),
    )
