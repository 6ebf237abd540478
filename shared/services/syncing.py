"""Token refresh and ticket state sync, one tenant at a time (the queue worker), fanned out by a timer.

Policy, in the order a sync applies it:

- **Fan-out.** The timer only lists connected tenants (one partition-spanning query on `Status`)
  and puts one message per tenant on `sync-requests`; the queue worker syncs one tenant. A
  tenant's failure is its message's failure: the others never notice.
- **One worker per tenant.** The worker takes a lease on the connection row (ETag-conditional
  write). A second message for the same tenant (a manual sync while the timer's runs, a backlog)
  is dropped while the lease is held, and so is a message made before the start of the tenant's
  last successful sync (that run queried ServiceNow after the request): both would only repeat
  the same work.
- **Tokens.** The access token is refreshed when it expires within 10 minutes. A dead grant marks
  the connection `reauthorization_required` (AccessTokens does that) and the worker returns
  without an error: retrying cannot help, and the timer lists only connected tenants, so later
  runs skip the tenant until an admin re-authorizes. A refresh token dying within 14 days is
  logged here and shown in the status (`refreshTokenExpiresSoon`).
- **Incremental pull.** Per table, one query: this connector's records (`correlation_display`)
  updated at or after the stored watermark less a look-back (2 minutes, so a record committed
  late with an older `sys_updated_on` is still seen), ordered by `sys_updated_on` then `sys_id`,
  only the four fields needed, pages of up to 1,000. Pages are keyset-paged, not offset-paged:
  each next page asks for `sys_updated_on>=` the newest time of the page before (records of that
  second come back and are dropped), so a record updated while we read moves to a later page
  and cannot push another one past an offset unseen. A second holding a whole page is read on
  by `sys_id` within that second, then the next page starts after it.
- **Same second and look-back.** ServiceNow dates have one-second resolution, so the query uses
  `>=`. The watermark stores which records (sys_id, state, time) of the look-back window below
  it were already handled, so those are skipped (no read of our rows), while a record changed
  later in the watermark's second, or committed late inside the window, is applied.
- **Writes, then the watermark.** Only records whose state differs from our row are written,
  merged in transactions of at most 100 rows of the tenant's partition. The watermark (and the
  set seen in its window) is saved after the rows are written, so a crash in between only
  repeats work, it never skips any.
- **Deletions and drift.** A deleted record never shows up in an incremental query, so every
  `reconcile_every` (default a day), and on the first sync of a table, the query leaves out the
  watermark and lists all of this connector's records; our tickets whose `sys_id` is missing from
  the listing are looked up once more by `sys_id` (so a record that merely lost its correlation
  is not mistaken for a deleted one) and the ones still missing are marked deleted. The same
  listing repairs any state a normal run missed. Normal runs stay within `tables +
  ceil(changed / 1000)` requests; the reconciliation costs `tables + ceil(tickets / 1000)` once a day.
- **Status.** Success sets `lastSyncAt` and clears `lastError`. Every status write is conditional
  on the row still being the connection this run started with (same instance, client and
  authorization, still connected) and the lease on it still being this run's: a stale failure
  never overwrites a re-authorization, and a success never clears the error of a connection that
  needs re-authorizing.
- **Failures.** ServiceNow refusing the query (400/403) or a freshly refreshed token is recorded
  in `lastError` and the message is consumed: retrying soon cannot help, and the next scheduled
  run tries again (one attempt per schedule). ServiceNow asking us to wait longer than
  `max_retry_after` (Retry-After) records `lastError` and `sync_not_before`; the timer skips the
  tenant until then. Any other failure records `lastError` and raises, so the host retries the
  message and finally moves it to `sync-requests-poison`.
- **Housekeeping.** The timer also deletes OAuth states that expired over a day ago (at most
  1,000 a run).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.errors import (
    AppError,
    ConnectionNotReady,
    ReauthorizationRequired,
    SyncEnqueueFailed,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.models import ConnectionStatus, SyncQueued, SyncReason, SyncRequest
from shared.ports import MessageQueue
from shared.records import (
    TICKET_ID,
    Connection,
    StateChangeResult,
    TicketStateChange,
    TicketSyncEntry,
    TokenSet,
)
from shared.services.sync_marks import (
    SEEN_SUFFIX,
    Record,
    Version,
    format_glide,
    format_seen,
    merge_watermarks,
    parse_glide,
    parse_seen,
    record_sys_id,
    record_updated,
    record_version,
    seconds_before,
    seen_window,
)
from shared.services.ticket_mapping import CORRELATION_DISPLAY
from shared.ticket_states import TICKET_TABLES, StateLabels, labels_from_choices

logger = logging.getLogger(__name__)

FIELDS = ["sys_id", "correlation_id", "state", "sys_updated_on"]
SYS_ID_CHUNK = 100  # sys_idIN lists: 100 ids of 32 characters keep the URL well under 8 KB
ENQUEUE_CONCURRENCY = 32
WATERMARK_CEILING = timedelta(hours=1)
REQUEUE_DELAY_S = 15  # a request that found a sync running is tried again this much later
EMPTY_TABLE_MARK = "1970-01-01 00:00:00"  # listed, nothing of ours in it yet
MAX_PAGES = 10_000  # per table and run: 10 million records; past it something is wrong


# --- ports ----------------------------------------------------------------------------------------


class ConnectionPort(Protocol):
    async def get(self, tenant_id: str) -> Connection | None: ...

    async def update(
        self, tenant_id: str, change: Callable[[Connection], dict[str, Any]], *, attempts: int = 3
    ) -> Connection | None: ...

    def with_status(self, status: ConnectionStatus) -> AsyncIterator[Connection]: ...


class TicketPort(Protocol):
    async def sync_index(self, tenant_id: str) -> dict[str, TicketSyncEntry]: ...

    async def apply_state_changes(
        self, tenant_id: str, changes: Sequence[TicketStateChange]
    ) -> StateChangeResult: ...

    async def mark_deleted(self, tenant_id: str, ticket_ids: Sequence[str], at: datetime) -> int: ...


class TokenPort(Protocol):
    async def refresh_if_expiring(self, connection: Connection, within: timedelta) -> TokenSet: ...


class RecordPort(Protocol):
    def query(
        self, connection: Connection, table: str, query: str, fields: list[str], *, page_size: int = ...
    ) -> AsyncIterator[list[Record]]: ...

    async def page(
        self, connection: Connection, table: str, query: str, fields: list[str], *, limit: int = ...
    ) -> list[Record]: ...


class OAuthStatePort(Protocol):
    async def delete_expired(self, before: datetime, *, limit: int = ...) -> int: ...


@dataclass(frozen=True)
class SyncConfig:
    page_size: int = 1000
    # The most records one request asks for (the Table API client's cap). A next page asks for
    # page_size plus the records of the boundary second it will see again, up to this.
    max_page_size: int = 1000
    refresh_within: timedelta = timedelta(minutes=10)
    refresh_token_warning: timedelta = timedelta(days=14)
    reconcile_every: timedelta = timedelta(days=1)
    # Re-read this far below the watermark: a record committed late (its transaction began before
    # our last read) carries an older sys_updated_on than records we already saw.
    look_back: timedelta = timedelta(minutes=2)
    # A Retry-After longer than this (the longest the ServiceNow client waits by itself) is not
    # left to the host's retries, 10 s apart: the tenant is not synced again before it has passed.
    max_retry_after: timedelta = timedelta(seconds=30)
    # A lease outlives the longest run the host allows (host.json functionTimeout, 10 minutes).
    lease: timedelta = timedelta(minutes=10)
    # Tickets younger than this are not judged missing: their record may be newer than the listing.
    deletion_grace: timedelta = timedelta(minutes=5)
    # The timer deletes OAuth states that expired this long ago, at most `state_purge_limit` a run.
    state_retention: timedelta = timedelta(days=1)
    state_purge_limit: int = 1000
    tables: tuple[str, ...] = TICKET_TABLES


@dataclass
class TableOutcome:
    table: str
    pages: int = 0  # ServiceNow requests made for the table's listing
    records: int = 0
    changed: int = 0
    deleted: int = 0
    reconciled: bool = False


@dataclass
class SyncOutcome:
    """How one tenant's sync ended (for logs and tests); `skipped` names why it stopped early."""

    tenant_id: str
    skipped: str | None = None
    refreshed: bool = False
    tables: list[TableOutcome] = field(default_factory=list)
    # Set when ServiceNow asked us to stay away (a long Retry-After): no sync before then.
    not_before: datetime | None = None

    @property
    def changed(self) -> int:
        return sum(t.changed for t in self.tables)


class _Skip(Exception):
    def __init__(self, reason: str, *, again: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.again = again  # put the request back on the queue, for after the running sync


# --- the service ------------------------------------------------------------------------------------


class SyncService:
    def __init__(
        self,
        *,
        connections: ConnectionPort,
        tickets: TicketPort,
        tokens: TokenPort,
        records: RecordPort,
        queue: MessageQueue,
        states: OAuthStatePort | None = None,
        config: SyncConfig | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._connections = connections
        self._tickets = tickets
        self._tokens = tokens
        self._records = records
        self._queue = queue
        self._states = states
        self._config = config or SyncConfig()
        self._clock = clock

    @property
    def config(self) -> SyncConfig:
        return self._config

    # --- fan-out ---------------------------------------------------------------------------------

    async def enqueue_connected(self, reason: SyncReason = "timer") -> int:
        """One message per connected tenant (but those ServiceNow asked us to leave alone for now);
        the number queued.

        Keeps going past a failed send so one bad moment does not starve the tenants after it,
        then raises, so the failure is visible on the timer's invocation.
        """
        requested_at = self._clock()
        queued = failed = deferred = 0
        batch: list[str] = []

        async def flush() -> None:
            nonlocal queued, failed
            results = await asyncio.gather(
                *(
                    self._send(SyncRequest(tenant_id=t, reason=reason, requested_at=requested_at))
                    for t in batch
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    failed += 1
                    logger.warning("Could not queue a sync: %s", result)
                else:
                    queued += 1
            batch.clear()

        async for connection in self._connections.with_status(ConnectionStatus.CONNECTED):
            if connection.sync_not_before is not None and connection.sync_not_before > requested_at:
                deferred += 1
                continue
            batch.append(connection.tenant_id)
            if len(batch) >= ENQUEUE_CONCURRENCY:
                await flush()
        if batch:
            await flush()
        logger.info(
            "Queued a %s sync for %d connected tenant(s)%s",
            reason,
            queued,
            f"; {deferred} left alone until ServiceNow's Retry-After has passed" if deferred else "",
        )
        if failed:
            raise SyncEnqueueFailed(f"{failed} of {queued + failed} sync messages could not be queued.")
        return queued

    async def purge_expired_states(self) -> int:
        """Delete OAuth states that expired over `state_retention` ago (bounded); never raises.

        Housekeeping on the timer: a failure is logged and the next run tries again.
        """
        if self._states is None:
            return 0
        cutoff = self._clock() - self._config.state_retention
        limit = self._config.state_purge_limit
        try:
            deleted = await self._states.delete_expired(cutoff, limit=limit)
        except AppError as error:
            logger.warning("Could not delete expired OAuth states: %s", error.message)
            return 0
        if deleted:
            logger.info(
                "Deleted %d OAuth state(s) that expired before %s%s",
                deleted,
                cutoff.isoformat(),
                " (the limit of one run; the next run goes on)" if deleted >= limit else "",
            )
        return deleted

    async def request_sync(self, tenant_id: str) -> SyncQueued:
        """POST /api/sync: queue this tenant's sync now (only a connected tenant can sync)."""
        connection = await self._connections.get(tenant_id)
        if connection is None or connection.status == ConnectionStatus.PENDING_AUTHORIZATION:
            raise ConnectionNotReady()
        if connection.status == ConnectionStatus.REAUTHORIZATION_REQUIRED:
            raise ReauthorizationRequired()
        request = SyncRequest(tenant_id=tenant_id, reason="manual", requested_at=self._clock())
        await self._send(request)
        logger.info("Queued a manual sync")
        return SyncQueued(requested_at=request.requested_at)

    async def _send(self, request: SyncRequest, *, delay_s: int = 0) -> None:
        await self._queue.send(request.model_dump_json(by_alias=True), delay_s=delay_s)

    # --- one tenant -----------------------------------------------------------------------------

    async def sync_tenant(self, request: SyncRequest) -> SyncOutcome:
        """Refresh the tenant's tokens if needed and pull its ticket states.

        Returns normally when there is nothing to do, or when retrying the message soon cannot
        help: a dead grant, ServiceNow refusing the query, ServiceNow asking us to wait long. Those
        are recorded on the connection. Raises on anything else, after recording it as the
        connection's `lastError`, so the host retries and finally poisons the message.
        """
        tenant_id = request.tenant_id
        outcome = SyncOutcome(tenant_id)
        started = self._clock()
        try:
            run = await self._connections.update(tenant_id, self._lease(request, started))
        except _Skip as skip:
            outcome.skipped = skip.reason
            logger.info("Sync skipped: %s", skip.reason)
            if skip.again:
                await self._send(request, delay_s=REQUEUE_DELAY_S)
            return outcome
        if run is None:
            outcome.skipped = "not configured"
            logger.info("Sync skipped: the tenant has no ServiceNow connection")
            return outcome
        try:
            await self._sync(run, started, outcome)
        except ReauthorizationRequired:
            # AccessTokens has already set reauthorization_required and lastError.
            outcome.skipped = "reauthorization required"
            logger.warning("Sync stopped: the ServiceNow grant is dead; waiting for an admin to re-authorize")
            await self._end(run, {})
            return outcome
        except ConnectionNotReady as error:
            # Connected, yet no token set or client secret is stored: only re-authorizing fixes it.
            outcome.skipped = "reauthorization required"
            logger.warning("Sync stopped: %s", error.message)
            await self._end(
                run,
                {
                    "status": ConnectionStatus.REAUTHORIZATION_REQUIRED,
                    "last_error": f"{error.message} An admin must re-authorize the connection.",
                },
            )
            return outcome
        except UpstreamUnavailable as error:
            wait = timedelta(seconds=error.retry_after)
            if not (error.hinted and wait > self._config.max_retry_after):
                await self._failed(run, error)
                raise
            not_before = self._clock() + wait
            outcome.skipped = "deferred by ServiceNow"
            outcome.not_before = not_before
            logger.warning(
                "Sync stopped: ServiceNow asked us to wait %d s; no sync of this tenant before %s",
                error.retry_after,
                not_before.isoformat(),
            )
            await self._end(
                run,
                {
                    "last_error": (
                        f"Sync paused: {error.message} ServiceNow asked us to wait; the next sync "
                        f"runs after {not_before:%Y-%m-%d %H:%M:%S} UTC."
                    ),
                    "sync_not_before": not_before,
                },
            )
            return outcome
        except UpstreamError as error:
            # Refused, or answered with something we cannot use (a refused fresh token, a page that
            # is not JSON): retrying in seconds cannot change that; the next scheduled run tries again.
            outcome.skipped = "rejected by ServiceNow"
            logger.warning(
                "Sync stopped (not retried; the next scheduled sync tries again): %s", error.message
            )
            await self._end(run, {"last_error": f"Sync failed: {error.message}"})
            return outcome
        except Exception as error:
            await self._failed(run, error)
            raise
        return outcome

    def _lease(self, request: SyncRequest, now: datetime) -> Callable[[Connection], dict[str, Any]]:
        def take(current: Connection) -> dict[str, Any]:
            if current.status != ConnectionStatus.CONNECTED:
                raise _Skip(f"the connection is {current.status.value}")
            if current.sync_lease_until is not None and current.sync_lease_until > now:
                if request.requested_at > current.sync_lease_until - self._config.lease:
                    # Asked for after that run started: it may have read ServiceNow too early.
                    raise _Skip(
                        "another sync of this tenant is running; asked again for after it", again=True
                    )
                raise _Skip("another sync of this tenant is running")
            if current.sync_not_before is not None and current.sync_not_before > now:
                raise _Skip(f"ServiceNow asked us to wait until {current.sync_not_before.isoformat()}")
            started = current.last_sync_started_at
            if started is not None and started >= request.requested_at:
                raise _Skip("the tenant was synced after this request was made")
            return {"sync_lease_until": now + self._config.lease, "updated_at": now}

        return take

    async def _failed(self, run: Connection, error: Exception) -> None:
        message = error.message if isinstance(error, AppError) else "The sync failed unexpectedly."
        logger.warning("Sync failed (the message will be retried): %s", message)
        await self._end(run, {"last_error": f"Sync failed: {message}"}, best_effort=True)

    async def _end(self, run: Connection, fields: dict[str, Any], *, best_effort: bool = False) -> None:
        """Release this run's lease and set `fields`, each only if it still applies.

        Both only while the lease is still this run's (an expired one may have been taken by
        another worker, whose news is newer), and `fields` (status, lastError) only while the row
        is still the connection this run started with: a re-authorization, a reconfiguration or a
        dead grant recorded meanwhile is newer news than this run's failure.
        """

        def change(current: Connection) -> dict[str, Any]:
            if current.sync_lease_until != run.sync_lease_until:
                return {}
            update: dict[str, Any] = {"sync_lease_until": None}
            if fields and current.is_same_live_grant(run):
                update.update(fields)
            update["updated_at"] = self._clock()
            return update

        try:
            await self._connections.update(run.tenant_id, change)
        except AppError:
            if not best_effort:
                raise
            logger.warning("Could not record the sync failure on the connection")

    async def _sync(self, run: Connection, started: datetime, outcome: SyncOutcome) -> None:
        before = run.access_token_expires_at
        tokens = await self._tokens.refresh_if_expiring(run, self._config.refresh_within)
        outcome.refreshed = before is not None and tokens.access_token_expires_at != before
        if tokens.refresh_token_expires_at - started < self._config.refresh_token_warning:
            logger.warning(
                "The ServiceNow refresh token expires at %s: an admin must re-authorize before then",
                tokens.refresh_token_expires_at,
            )
        reconcile_all = (
            run.last_reconciled_at is None or started - run.last_reconciled_at >= self._config.reconcile_every
        )
        index = _LazyIndex(lambda: self._tickets.sync_index(run.tenant_id))
        watermarks = dict(run.watermarks)
        tables = self._config.tables
        for position, table in enumerate(tables):
            reconcile = reconcile_all or table not in watermarks
            table_outcome, marks = await self._sync_table(run, table, watermarks, index, reconcile, started)
            outcome.tables.append(table_outcome)
            watermarks.update(marks)
            if not marks.get(table + SEEN_SUFFIX):
                watermarks.pop(table + SEEN_SUFFIX, None)
            if position < len(tables) - 1 and marks:
                # A checkpoint per table: a later table's failure does not repeat this one's work.
                await self._save_watermarks(run, marks)
        reconciled_all = all(t.reconciled for t in outcome.tables)
        final = {t: watermarks[t] for t in (tables[-1], tables[-1] + SEEN_SUFFIX) if t in watermarks}
        labels = await self._instance_state_labels(run) if reconciled_all else None

        def finish(current: Connection) -> dict[str, Any]:
            now = self._clock()
            fields: dict[str, Any] = {}
            if current.sync_lease_until == run.sync_lease_until:
                fields["sync_lease_until"] = None
            if current.instance_url == run.instance_url:
                fields["watermarks"] = merge_watermarks(current.watermarks, final, tables[-1])
                if reconciled_all:
                    fields["last_reconciled_at"] = started
                if labels:
                    fields["instance_state_labels"] = labels
                if current.client_id == run.client_id:
                    fields["last_sync_at"] = now
                    previous = current.last_sync_started_at
                    fields["last_sync_started_at"] = started if previous is None else max(previous, started)
                    if current.status == ConnectionStatus.CONNECTED:
                        # Not when the grant died meanwhile: its lastError says what to do.
                        fields["last_error"] = None
                        fields["sync_not_before"] = None
            if fields:
                fields["updated_at"] = now
            return fields

        await self._connections.update(run.tenant_id, finish)
        logger.info(
            "Synced: %d state change(s), %d deletion(s) over %d page(s)%s",
            outcome.changed,
            sum(t.deleted for t in outcome.tables),
            sum(t.pages for t in outcome.tables),
            " (reconciled)" if reconciled_all else "",
        )

    async def _instance_state_labels(self, run: Connection) -> StateLabels | None:
        """The instance's own state labels, read with the daily reconciliation (one request).

        Best effort: the defaults serve until they can be read, so a failure here fails no sync.
        """
        query = f"nameIN{','.join(TICKET_TABLES)}^element=state^language=en^ORDERBYsequence"
        try:
            rows = await self._records.page(run, "sys_choice", query, ["name", "value", "label"])
        except AppError as error:
            logger.warning("Could not read the instance's state labels: %s", error.message)
            return None
        return labels_from_choices(rows)

    async def _save_watermarks(self, run: Connection, marks: dict[str, str]) -> None:
        table = next(key for key in marks if SEEN_SUFFIX not in key)

        def save(current: Connection) -> dict[str, Any]:
            if current.instance_url != run.instance_url:
                return {}  # reconfigured to another instance meanwhile: these marks mean nothing there
            return {"watermarks": merge_watermarks(current.watermarks, marks, table)}

        await self._connections.update(run.tenant_id, save)

    async def _sync_table(
        self,
        connection: Connection,
        table: str,
        watermarks: dict[str, str],
        index: _LazyIndex,
        reconcile: bool,
        started: datetime,
    ) -> tuple[TableOutcome, dict[str, str]]:
        outcome = TableOutcome(table, reconciled=reconcile)
        mark = watermarks.get(table) or ""
        seen = parse_seen(watermarks.get(table + SEEN_SUFFIX), mark) if mark else {}
        lower = None if reconcile or not mark else seconds_before(mark, self._config.look_back)
        observed: dict[str, Version] = {}  # every record listed, in its newest version
        async for page in self._pull(connection, table, lower, outcome):
            outcome.records += len(page)
            fresh: list[Record] = []
            for record in page:
                sys_id, version = record_sys_id(record), record_version(record)
                if sys_id not in observed or version[0] >= observed[sys_id][0]:
                    observed[sys_id] = version
                if not reconcile and seen.get(sys_id) == version:
                    # Handled by an earlier run (same time, same state). Not trusted when
                    # reconciling: that run is the repair for whatever a normal run got wrong.
                    continue
                fresh.append(record)
            if fresh:
                outcome.changed += await self._apply(connection.tenant_id, table, fresh, await index.get())
        if reconcile:
            outcome.deleted = await self._reconcile(connection, table, set(observed), index, started)
        marks: dict[str, str] = {}
        # A record dated far in the future (a wrong clock on the instance) must not carry the
        # watermark past every normal update to come: it stops an hour ahead of our clock.
        ceiling = format_glide(started + WATERMARK_CEILING)
        newest = max([mark, *(min(updated, ceiling) for updated, _ in observed.values())])
        if not newest and reconcile:
            # A table with none of our records yet: remember it was listed, or every run would
            # reconcile it again (and read the tenant's whole ticket index to do so).
            newest = EMPTY_TABLE_MARK
        if newest:
            marks[table] = newest
            window = seen_window(observed, newest, self._config.look_back)
            if window:
                marks[table + SEEN_SUFFIX] = format_seen(window, newest)
        return outcome, marks

    async def _pull(
        self, connection: Connection, table: str, lower: str | None, outcome: TableOutcome
    ) -> AsyncIterator[list[Record]]:
        """This connector's records of `table` updated at or after `lower` (all of them when None),
        oldest first, a page at a time; each version of a record once.

        Keyset paging: the next page asks for `sys_updated_on>=` the newest time of the page
        before, so a record updated while we read moves to a later page instead of shifting the
        others past an offset. The boundary second's records come back and are dropped here; the
        next page asks for that many more (up to `max_page_size`). When one second fills a whole
        page, the rest of that second is read by `sys_id` and the next page starts after it.
        """
        base = f"correlation_display={CORRELATION_DISPLAY}"
        order = "ORDERBYsys_updated_on^ORDERBYsys_id"
        cap = max(1, self._config.max_page_size)
        size = max(1, min(self._config.page_size, cap))
        after = f"sys_updated_on>={lower}" if lower else ""
        limit = size
        returned: dict[str, Version] = {}

        def unseen(page: list[Record]) -> list[Record]:
            fresh = []
            for record in page:
                sys_id, version = record_sys_id(record), record_version(record)
                if returned.get(sys_id) != version:
                    returned[sys_id] = version
                    fresh.append(record)
            return fresh

        async def fetch(query: str, limit: int) -> list[Record]:
            if outcome.pages >= MAX_PAGES:
                raise UpstreamError(f"ServiceNow kept paging {table} past {MAX_PAGES} pages.")
            outcome.pages += 1
            return await self._records.page(connection, table, query, FIELDS, limit=limit)

        while True:
            page = await fetch("^".join(part for part in (base, after, order) if part), limit)
            fresh = unseen(page)
            if fresh:
                yield fresh
            if len(page) < limit:
                return
            last = record_updated(page[-1])
            boundary = sum(1 for record in page if record_updated(record) == last)
            if boundary < cap:
                after, limit = f"sys_updated_on>={last}", min(cap, size + boundary)
                continue
            # A whole page of one second (a bulk update): read on in it by sys_id, then go past it.
            last_id = record_sys_id(page[-1])
            while True:
                within = f"{base}^sys_updated_on={last}^sys_id>{last_id}^ORDERBYsys_id"
                page = await fetch(within, cap)
                fresh = unseen(page)
                if fresh:
                    yield fresh
                if len(page) < cap:
                    break
                if record_sys_id(page[-1]) <= last_id:
                    raise UpstreamError(f"ServiceNow did not page {table} on by sys_id; stopped.")
                last_id = record_sys_id(page[-1])
            after, limit = f"sys_updated_on>{last}", size

    async def _apply(
        self, tenant_id: str, table: str, records: list[Record], index: dict[str, TicketSyncEntry]
    ) -> int:
        changes: dict[str, TicketStateChange] = {}
        for record in records:
            ticket_id = str(record.get("correlation_id", ""))
            entry = index.get(ticket_id) if TICKET_ID.match(ticket_id) else None
            if entry is None or entry.type != table or entry.sys_id != record.get("sys_id"):
                continue  # not one of this tenant's tickets (another tenant may share the instance)
            state = str(record.get("state", ""))
            if state == entry.state:
                continue  # something other than the state changed (a work note, say)
            updated = str(record.get("sys_updated_on", ""))
            changes[ticket_id] = TicketStateChange(
                ticket_id=ticket_id,
                state=state,
                state_updated_at=parse_glide(updated) or self._clock(),
                servicenow_updated_on=updated or None,
            )
            index[ticket_id] = _with_state(entry, state)
        if changes:
            result = await self._tickets.apply_state_changes(tenant_id, list(changes.values()))
            if result.missing:
                logger.info("%d ticket row(s) vanished while syncing %s", len(result.missing), table)
            return result.applied
        return 0

    async def _reconcile(
        self, connection: Connection, table: str, listed: set[str], index: _LazyIndex, started: datetime
    ) -> int:
        """Mark our tickets whose record is gone; a record merely missing from the listing is kept."""
        entries = await index.get()
        cutoff = started - self._config.deletion_grace
        suspects = {
            entry.sys_id: entry
            for entry in entries.values()
            if entry.type == table
            and entry.sys_id
            and not entry.deleted
            and entry.sys_id not in listed
            and (entry.created_at is None or entry.created_at < cutoff)
        }
        if not suspects:
            return 0
        still_there: list[Record] = []
        ids = sorted(suspects)
        for start in range(0, len(ids), SYS_ID_CHUNK):
            chunk = ids[start : start + SYS_ID_CHUNK]
            query = f"sys_idIN{','.join(chunk)}^ORDERBYsys_id"
            async for page in self._records.query(connection, table, query, FIELDS, page_size=SYS_ID_CHUNK):
                still_there.extend(page)
        present = {str(record.get("sys_id", "")) for record in still_there}
        if still_there:
            await self._apply(connection.tenant_id, table, still_there, entries)
        gone = [suspects[sys_id].ticket_id for sys_id in ids if sys_id not in present]
        if gone:
            await self._tickets.mark_deleted(connection.tenant_id, gone, self._clock())
            logger.info("%d %s ticket(s) were deleted in ServiceNow; marked as deleted", len(gone), table)
        return len(gone)


class _LazyIndex:
    """Our ticket rows are read once per sync, and only if ServiceNow reported something to compare."""

    def __init__(self, load: Callable[[], Awaitable[dict[str, TicketSyncEntry]]]) -> None:
        self._load = load
        self._index: dict[str, TicketSyncEntry] | None = None

    async def get(self) -> dict[str, TicketSyncEntry]:
        if self._index is None:
            self._index = await self._load()
        return self._index


def request_bound(tables: int, changed: int, page_size: int = 1000) -> int:
    """The most ServiceNow requests a normal (not reconciling) sync may make."""
    return tables + math.ceil(changed / page_size)


def _with_state(entry: TicketSyncEntry, state: str) -> TicketSyncEntry:
    return TicketSyncEntry(
        ticket_id=entry.ticket_id,
        type=entry.type,
        sys_id=entry.sys_id,
        state=state,
        created_at=entry.created_at,
        deleted=entry.deleted,
    )
