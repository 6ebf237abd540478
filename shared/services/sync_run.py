"""One tenant's sync, run by the queue worker under a lease on the tenant's connection row: take the
lease, refresh the tokens, sync each table, then write how it went to the row, each field only while
it is still news (policy: `syncing.py`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import AppError
from shared.models import ConnectionStatus, SyncRequest
from shared.ports import ConnectionStore, MessageQueue, ServiceNowRecords, TicketStore, TokenRefresher
from shared.records import REFRESH_TOKEN_WARNING, Connection
from shared.services.sync_apply import LazyIndex, instance_state_labels
from shared.services.sync_config import SyncConfig
from shared.services.sync_failures import ending_of
from shared.services.sync_fanout import send_request
from shared.services.sync_marks import merge_watermarks
from shared.services.sync_table import TableOutcome, TableSync
from shared.ticket_states import StateLabels

logger = logging.getLogger(__name__)

REQUEUE_DELAY_S = 15  # a request that found a sync running is tried again this much later


@dataclass
class SyncOutcome:
    """How one tenant's sync ended (for logs and tests); `skipped` names why it stopped early."""

    tenant_id: str
    skipped: str | None = None
    tables: list[TableOutcome] = field(default_factory=list)
    # Set when ServiceNow asked us to stay away (a long Retry-After): no sync before then.
    not_before: datetime | None = None

    @property
    def changed(self) -> int:
        return sum(t.changed for t in self.tables)


@dataclass(frozen=True)
class _Refusal:
    """Why a run does not start; `again`: put its request back on the queue, for after the running sync."""

    reason: str
    again: bool = False


class _Lease:
    """The lease write's change: take the lease, or note why not. Decided on every row `update`
    reads, so a write that lost a race is decided again on the row that won it."""

    def __init__(self, request: SyncRequest, now: datetime, duration: timedelta) -> None:
        self._request = request
        self._now = now
        self._duration = duration
        self.refusal: _Refusal | None = None

    def __call__(self, current: Connection) -> dict[str, Any]:
        self.refusal = self._refusal(current)
        if self.refusal is not None:
            return {}
        return {"sync_lease_until": self._now + self._duration, "updated_at": self._now}

    def _refusal(self, current: Connection) -> _Refusal | None:
        if current.status != ConnectionStatus.CONNECTED:
            return _Refusal(f"the connection is {current.status.value}")
        running_until = current.sync_lease_until
        if running_until is not None and running_until > self._now:
            if self._request.requested_at > running_until - self._duration:
                # Asked for after that run started: it may have read ServiceNow too early.
                return _Refusal(
                    "another sync of this tenant is running; asked again for after it", again=True
                )
            return _Refusal("another sync of this tenant is running")
        if current.sync_not_before is not None and current.sync_not_before > self._now:
            return _Refusal(f"ServiceNow asked us to wait until {current.sync_not_before.isoformat()}")
        started = current.last_sync_started_at
        if started is not None and started >= self._request.requested_at:
            return _Refusal("the tenant was synced after this request was made")
        return None


@dataclass(frozen=True)
class _Pulled:
    """What the tables' pass leaves for the final status write."""

    started: datetime
    table: str  # the last table: the others' marks were saved as checkpoints
    marks: dict[str, str]
    reconciled: bool
    labels: StateLabels | None


class TenantSync:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        tickets: TicketStore,
        tokens: TokenRefresher,
        records: ServiceNowRecords,
        queue: MessageQueue,
        config: SyncConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._connections = connections
        self._tickets = tickets
        self._tokens = tokens
        self._records = records
        self._queue = queue
        self._config = config or SyncConfig()
        self._clock = clock
        self._tables = TableSync(tickets=tickets, records=records, config=self._config, clock=clock)

    async def sync_tenant(self, request: SyncRequest) -> SyncOutcome:
        """Refresh the tenant's tokens if needed and pull its ticket states.

        Returns normally when there is nothing to do, or when retrying the message soon cannot
        help: a dead grant, ServiceNow refusing the query, ServiceNow asking us to wait long. Those
        are recorded on the connection. Raises on anything else, after recording it as the
        connection's `lastError`, so the host retries and finally poisons the message.
        """
        outcome = SyncOutcome(request.tenant_id)
        started = self._clock.now()
        run = await self._take_lease(request, started)
        if not isinstance(run, Connection):
            outcome.skipped = await self._not_run(request, run)
            return outcome
        try:
            await self._sync(run, started, outcome)
        except Exception as error:
            ending = ending_of(error, now=self._clock.now(), max_retry_after=self._config.max_retry_after)
            await self._end(run, ending.fields, best_effort=ending.skipped is None)
            if ending.skipped is None:
                raise
            outcome.skipped, outcome.not_before = ending.skipped, ending.not_before
        return outcome

    async def _take_lease(self, request: SyncRequest, now: datetime) -> Connection | _Refusal | None:
        """The row with this run's lease on it, or why the run does not start (None: no row)."""
        lease = _Lease(request, now, self._config.lease)
        run = await self._connections.update(request.tenant_id, lease)
        return lease.refusal or run

    async def _not_run(self, request: SyncRequest, refusal: _Refusal | None) -> str:
        if refusal is None:
            logger.info("Sync skipped: the tenant has no ServiceNow connection")
            return "not configured"
        logger.info("Sync skipped: %s", refusal.reason)
        if refusal.again:
            await send_request(self._queue, request, delay_s=REQUEUE_DELAY_S)
        return refusal.reason

    async def _sync(self, run: Connection, started: datetime, outcome: SyncOutcome) -> None:
        await self._refresh_tokens(run, started)
        pulled = await self._sync_tables(run, started, outcome)
        await self._connections.update(run.tenant_id, lambda current: self._finished(current, run, pulled))
        logger.info(
            "Synced: %d state change(s), %d deletion(s) over %d page(s)%s",
            outcome.changed,
            sum(t.deleted for t in outcome.tables),
            sum(t.pages for t in outcome.tables),
            " (reconciled)" if pulled.reconciled else "",
        )

    async def _refresh_tokens(self, run: Connection, started: datetime) -> None:
        tokens = await self._tokens.refresh_if_expiring(run, self._config.refresh_within)
        if tokens.refresh_token_expires_at - started < REFRESH_TOKEN_WARNING:
            logger.warning(
                "The ServiceNow refresh token expires at %s: an admin must re-authorize before then",
                tokens.refresh_token_expires_at,
            )

    async def _sync_tables(self, run: Connection, started: datetime, outcome: SyncOutcome) -> _Pulled:
        last = run.last_reconciled_at
        reconcile_all = last is None or started - last >= self._config.reconcile_every
        index = LazyIndex(lambda: self._tickets.sync_index(run.tenant_id))
        tables = self._config.tables
        marks: dict[str, str] = {}
        for position, table in enumerate(tables):
            reconcile = reconcile_all or table not in run.watermarks
            table_outcome, marks = await self._tables.sync(
                run, table, index, reconcile=reconcile, started=started
            )
            outcome.tables.append(table_outcome)
            if position < len(tables) - 1 and marks:
                # A checkpoint per table: a later table's failure does not repeat this one's work.
                await self._save_watermarks(run, table, marks)
        reconciled = all(t.reconciled for t in outcome.tables)
        labels = await instance_state_labels(self._records, run) if reconciled else None
        return _Pulled(started, tables[-1], marks, reconciled, labels)

    async def _save_watermarks(self, run: Connection, table: str, marks: dict[str, str]) -> None:
        def save(current: Connection) -> dict[str, Any]:
            if current.instance_url != run.instance_url:
                return {}  # reconfigured to another instance meanwhile: these marks mean nothing there
            return {"watermarks": merge_watermarks(current.watermarks, marks, table)}

        await self._connections.update(run.tenant_id, save)

    def _finished(self, current: Connection, run: Connection, pulled: _Pulled) -> dict[str, Any]:
        """The success write: each field only while it is still this run's news."""
        now = self._clock.now()
        fields: dict[str, Any] = {}
        if current.sync_lease_until == run.sync_lease_until:
            fields["sync_lease_until"] = None
        if current.instance_url == run.instance_url:
            fields["watermarks"] = merge_watermarks(current.watermarks, pulled.marks, pulled.table)
            if pulled.reconciled:
                fields["last_reconciled_at"] = pulled.started
            if pulled.labels:
                fields["instance_state_labels"] = pulled.labels
            if current.client_id == run.client_id:
                fields["last_sync_at"] = now
                previous = current.last_sync_started_at
                fields["last_sync_started_at"] = (
                    pulled.started if previous is None else max(previous, pulled.started)
                )
                if current.status == ConnectionStatus.CONNECTED:
                    # Not when the grant died meanwhile: its lastError says what to do.
                    fields["last_error"] = None
                    fields["sync_not_before"] = None
        if fields:
            fields["updated_at"] = now
        return fields

    async def _end(self, run: Connection, fields: dict[str, Any], *, best_effort: bool) -> None:
        """Release this run's lease and set `fields`, each only if it still applies.

        Both only while the lease is still this run's (an expired one may have been taken by
        another worker, whose news is newer), and `fields` (status, lastError) only while the row
        is still the connection this run started with: a re-authorization, a reconfiguration or a
        dead grant recorded meanwhile is newer news than this run's failure. `best_effort`: a
        failure to write is logged, not raised (the run's own failure is what the host should see).
        """

        def change(current: Connection) -> dict[str, Any]:
            if current.sync_lease_until != run.sync_lease_until:
                return {}
            update: dict[str, Any] = {"sync_lease_until": None}
            if fields and current.is_same_live_grant(run):
                update.update(fields)
            update["updated_at"] = self._clock.now()
            return update

        try:
            await self._connections.update(run.tenant_id, change)
        except AppError:
            if not best_effort:
                raise
            logger.warning("Could not record the sync failure on the connection")
