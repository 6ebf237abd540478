"""One tenant's sync, run by the queue worker under a lease on the tenant's connection row: take the
lease, refresh the tokens, list each table, write the run's state changes, then write how it went
to the row, each field only while it is still news (policy: `syncing.py`; the row writes:
`sync_lease.py`; the ticket rows: `sync_rows.py`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import telemetry
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import AppError, DependencyNotConfigured
from shared.models import ConnectionStatus, SyncRequest
from shared.ports import ConnectionStore, MessageQueue, ServiceNowRecords, TicketStore, TokenRefresher
from shared.records import REFRESH_TOKEN_WARNING, Connection
from shared.services.remediation_check import RemediationCheck
from shared.services.sync_apply import LazyIndex, instance_state_labels
from shared.services.sync_config import SyncConfig
from shared.services.sync_failures import ending_of
from shared.services.sync_fanout import send_request
from shared.services.sync_lag import LagMeasuringRows
from shared.services.sync_lease import Refusal, take_lease, write_status
from shared.services.sync_marks import merge_tables
from shared.services.sync_rows import RowWriter
from shared.services.sync_table import TableOutcome, TableSync
from shared.ticket_states import StateLabels

logger = logging.getLogger(__name__)

REQUEUE_DELAY_S = 15  # a request that found a sync running is tried again this much later
Marks = dict[str, dict[str, str]]  # table -> its watermark and seen-set


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


@dataclass
class _Progress:
    """What a run has done so far: its pending row writes, and the marks of the tables it listed
    to the end (saved only once their rows are written, also when a later table fails)."""

    rows: RowWriter
    index: LazyIndex
    marks: Marks = field(default_factory=dict)


@dataclass(frozen=True)
class _Pulled:
    """What the tables' pass leaves for the final status write."""

    started: datetime
    marks: Marks
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
        remediation: RemediationCheck | None = None,
    ) -> None:
        self._connections = connections
        self._tickets = tickets
        self._tokens = tokens
        self._records = records
        self._queue = queue
        self._config = config or SyncConfig()
        self._clock = clock
        self._remediation = remediation
        self._tables = TableSync(tickets=tickets, records=records, config=self._config, clock=clock)

    async def sync_tenant(self, request: SyncRequest) -> SyncOutcome:
        """Refresh the tenant's tokens if needed and pull its ticket states.

        Returns normally when there is nothing to do, or when retrying the message soon cannot
        help: a dead grant, ServiceNow refusing the query, ServiceNow asking us to wait long. Those
        are recorded on the connection. Raises on anything else, after recording it as the
        connection's `lastError`, so the host retries and finally poisons the message.
        """
        started, ended, changed = self._clock.now(), "failed", 0
        try:
            outcome = await self._sync_tenant(request, started)
            ended, changed = ("skipped", 0) if outcome.skipped else ("synced", outcome.changed)
            return outcome
        finally:
            telemetry.sync_run(ended, (self._clock.now() - started).total_seconds(), changed)

    async def _sync_tenant(self, request: SyncRequest, started: datetime) -> SyncOutcome:
        outcome = SyncOutcome(request.tenant_id)
        run = await take_lease(self._connections, request, started, self._config.lease)
        if not isinstance(run, Connection):
            outcome.skipped = await self._not_run(request, run)
            return outcome
        progress = self._progress(run.tenant_id, run.watermarks)
        try:
            await self._sync(run, started, outcome, progress)
        except Exception as error:
            ending = ending_of(error, now=self._clock.now(), max_retry_after=self._config.max_retry_after)
            marks = await self._written_marks(progress)
            await self._end(run, ending.fields, marks, best_effort=ending.skipped is None)
            if ending.skipped is None:
                raise
            outcome.skipped, outcome.not_before = ending.skipped, ending.not_before
        return outcome

    def _progress(self, tenant_id: str, watermarks: dict[str, str]) -> _Progress:
        index = LazyIndex(lambda: self._tickets.sync_index(tenant_id))
        return _Progress(LagMeasuringRows(self._tickets, tenant_id, index, self._clock, watermarks), index)

    async def _not_run(self, request: SyncRequest, refusal: Refusal | None) -> str:
        if refusal is None:
            logger.info("Sync skipped: the tenant has no ServiceNow connection")
            return "not configured"
        logger.info("Sync skipped: %s", refusal.reason)
        if refusal.again:
            # Without the listed row: the running sync's lease write has changed the row since.
            await send_request(self._queue, request.model_copy(update={"row": None}), delay_s=REQUEUE_DELAY_S)
        return refusal.reason

    async def _sync(
        self, run: Connection, started: datetime, outcome: SyncOutcome, progress: _Progress
    ) -> None:
        await self._refresh_tokens(run, started)
        pulled = await self._sync_tables(run, started, outcome, progress)
        await progress.rows.flush()  # the rows first: a watermark never passes a change not written
        for table in outcome.tables:
            table.changed = progress.rows.written[table.table]
        await self._secure_score(run, pulled, progress.rows.written_ids)
        await write_status(self._connections, run, lambda current: self._finished(current, run, pulled))
        logger.info(
            "Synced: %d state change(s), %d deletion(s) over %d page(s)%s",
            outcome.changed,
            sum(t.deleted for t in outcome.tables),
            sum(t.pages for t in outcome.tables),
            " (reconciled)" if pulled.reconciled else "",
        )

    async def _secure_score(self, run: Connection, pulled: _Pulled, changed: set[str]) -> None:
        """With the daily reconciliation, the Secure Score check (`remediation_check.py`); on other
        runs, the write-back of the tickets this run changed, when the tenant turned it on (nothing
        is read otherwise). Under the lease, so two runs of a tenant never write back at once, and
        no PATCH starts past half the lease. A failure is logged, never the sync's."""
        if self._remediation is None:
            return
        deadline = pulled.started + self._config.lease / 2
        try:
            if pulled.reconciled or self._check_resumes(run, pulled.started):
                labels = pulled.labels or run.instance_state_labels
                checked = run.model_copy(update={"instance_state_labels": labels})
                await self._remediation.check_tenant(checked, deadline=deadline)
            elif run.secure_score_write_back:
                await self._remediation.write_back_changed(run, sorted(changed), deadline=deadline)
        except DependencyNotConfigured:
            logger.info("Secure Score check skipped: Microsoft Graph is not configured")
        except AppError as error:
            logger.warning("Secure Score check failed: %s", error.message)
        except Exception:  # a defect in the check must not cost the tenant its sync
            logger.exception("Secure Score check failed")

    def _check_resumes(self, run: Connection, now: datetime) -> bool:
        """A daily check that Graph paused (429) runs again on the first run after the pause, not
        a day later; only then: a tenant never paused costs a normal run nothing here."""
        paused_until, checked_at = run.graph_not_before, run.remediation_checked_at
        if paused_until is None or paused_until > now:
            return False
        return checked_at is None or checked_at < paused_until - self._config.reconcile_every

    async def _refresh_tokens(self, run: Connection, started: datetime) -> None:
        tokens = await self._tokens.refresh_if_expiring(run, self._config.refresh_within)
        if tokens.refresh_token_expires_at - started < REFRESH_TOKEN_WARNING:
            logger.warning(
                "The ServiceNow refresh token expires at %s: an admin must re-authorize before then",
                tokens.refresh_token_expires_at,
            )

    async def _sync_tables(
        self, run: Connection, started: datetime, outcome: SyncOutcome, progress: _Progress
    ) -> _Pulled:
        last = run.last_reconciled_at
        reconcile_all = last is None or started - last >= self._config.reconcile_every
        for table in self._config.tables:
            reconcile = reconcile_all or table not in run.watermarks
            table_outcome, marks = await self._tables.sync(
                run, table, progress.rows, progress.index, reconcile=reconcile, started=started
            )
            outcome.tables.append(table_outcome)
            progress.marks[table] = marks
        reconciled = all(t.reconciled for t in outcome.tables)
        labels = await instance_state_labels(self._records, run) if reconciled else None
        return _Pulled(started, dict(progress.marks), reconciled, labels)

    async def _written_marks(self, progress: _Progress) -> Marks:
        """After a failure: the marks of the tables listed to the end, once the changes read before
        the failure are written (so a later table's failure does not repeat an earlier one's
        work); none when they cannot be."""
        if progress.rows.failed or not progress.marks:
            return {}
        try:
            await progress.rows.flush()
        except AppError as error:
            logger.warning("Could not write the state changes read before the failure: %s", error.message)
            return {}
        return progress.marks

    def _finished(self, current: Connection, run: Connection, pulled: _Pulled) -> dict[str, Any]:
        """The success write: each field only while it is still this run's news."""
        now = self._clock.now()
        fields: dict[str, Any] = {}
        if current.sync_lease_until == run.sync_lease_until:
            fields["sync_lease_until"] = None
        if current.instance_url == run.instance_url:
            fields["watermarks"] = merge_tables(current.watermarks, pulled.marks)
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

    async def _end(self, run: Connection, fields: dict[str, Any], marks: Marks, *, best_effort: bool) -> None:
        """Release this run's lease and set `fields`, each only if it still applies, and save the
        `marks` of the tables whose rows are written.

        The lease and `fields` only while the lease is still this run's (an expired one may have
        been taken by another worker, whose news is newer), and `fields` (status, lastError) only
        while the row is still the connection this run started with: a re-authorization, a
        reconfiguration or a dead grant recorded meanwhile is newer news than this run's failure.
        The marks whenever the row still names the run's instance (they never move back).
        `best_effort`: a failure to write is logged, not raised (the run's own failure is what
        the host should see).
        """

        def change(current: Connection) -> dict[str, Any]:
            update: dict[str, Any] = {}
            if marks and current.instance_url == run.instance_url:
                watermarks = merge_tables(current.watermarks, marks)
                if watermarks != current.watermarks:
                    update["watermarks"] = watermarks
            if current.sync_lease_until == run.sync_lease_until:
                update["sync_lease_until"] = None
                if fields and current.is_same_live_grant(run):
                    update.update(fields)
                update["updated_at"] = self._clock.now()
            return update

        try:
            await write_status(self._connections, run, change)
        except AppError:
            if not best_effort:
                raise
            logger.warning("Could not record the sync failure on the connection")
