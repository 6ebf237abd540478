"""Token refresh and ticket state sync, one tenant at a time (the queue worker), fanned out by a timer.

Policy, in the order a sync applies it:

- **Fan-out.** The timer only lists connected tenants (one partition-spanning query on `Status`)
  and puts one message per tenant on `sync-requests`; the queue worker syncs one tenant. A
  tenant's failure is its message's failure: the others never notice.
- **One worker per tenant.** The worker takes a lease on the connection row (ETag-conditional
  write). A second message for the same tenant (a manual sync while the timer's runs, a backlog)
  is dropped while the lease is held, and a message older than the tenant's last successful sync
  is dropped too: both would only repeat the same work.
- **Tokens.** The access token is refreshed when it expires within 10 minutes. A dead grant marks
  the connection `reauthorization_required` (AccessTokens does that) and the worker returns
  without an error: retrying cannot help, and the timer lists only connected tenants, so later
  runs skip the tenant until an admin re-authorizes. A refresh token dying within 14 days is
  logged here and shown in the status (`refreshTokenExpiresSoon`).
- **Incremental pull.** Per table, one query: this connector's records (`correlation_display`)
  updated at or after the stored watermark, ordered by `sys_updated_on` (then `sys_id`, so pages
  are stable), only the four fields needed, pages of up to 1,000 via `Link`. ServiceNow dates have
  one-second resolution, so the query uses `>=`: a record changed later in the same second as the
  watermark is returned again. The watermark stores which records (and in which state) were
  already applied at that second, so those are skipped and the rest are not missed.
- **Writes, then the watermark.** Only records whose state differs from our row are written,
  merged in transactions of at most 100 rows of the tenant's partition. The watermark (and the
  set seen at its second) is saved after the rows are written, so a crash in between only
  repeats work, it never skips any.
- **Deletions and drift.** A deleted record never shows up in an incremental query, so every
  `reconcile_every` (default a day), and on the first sync of a table, the query leaves out the
  watermark and lists all of this connector's records; our tickets whose `sys_id` is missing from
  the listing are looked up once more by `sys_id` (so a record that merely lost its correlation
  is not mistaken for a deleted one) and the ones still missing are marked deleted. The same
  listing repairs any state a normal run missed. Normal runs stay within `tables +
  ceil(changed / 1000)` requests; the reconciliation costs `tables + ceil(tickets / 1000)` once a day.
- **Status.** Success sets `lastSyncAt` and clears `lastError`. A failure records `lastError` and
  raises, so the host retries the message and finally moves it to `sync-requests-poison`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.errors import AppError, ConnectionNotReady, ReauthorizationRequired
from shared.models import (
    Connection,
    ConnectionStatus,
    SyncQueued,
    SyncReason,
    SyncRequest,
    TokenSet,
)
from shared.servicenow.states import TICKET_TABLES
from shared.services.ticket_mapping import CORRELATION_DISPLAY
from shared.stores.queues import MessageQueue
from shared.stores.tickets import TICKET_ID, StateChangeResult, TicketStateChange, TicketSyncEntry

logger = logging.getLogger(__name__)

FIELDS = ["sys_id", "correlation_id", "state", "sys_updated_on"]
GLIDE_FORMAT = "%Y-%m-%d %H:%M:%S"
SEEN_SUFFIX = "@seen"
# How many (sys_id, state) pairs are kept for the watermark's second. Past this (a bulk update in
# one second), none are kept: those records are compared with our rows again next run, which
# costs a read of the partition but never a missed or a repeated write.
SEEN_LIMIT = 100
SYS_ID_CHUNK = 100  # sys_idIN lists: 100 ids of 32 characters keep the URL well under 8 KB
ENQUEUE_CONCURRENCY = 32

Record = dict[str, Any]


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


@dataclass(frozen=True)
class SyncConfig:
    page_size: int = 1000
    refresh_within: timedelta = timedelta(minutes=10)
    refresh_token_warning: timedelta = timedelta(days=14)
    reconcile_every: timedelta = timedelta(days=1)
    # A lease outlives the longest run the host allows (host.json functionTimeout, 10 minutes).
    lease: timedelta = timedelta(minutes=10)
    # Tickets younger than this are not judged missing: their record may be newer than the listing.
    deletion_grace: timedelta = timedelta(minutes=5)
    tables: tuple[str, ...] = TICKET_TABLES


@dataclass
class TableOutcome:
    table: str
    pages: int = 0
    records: int = 0
    changed: int = 0
    deleted: int = 0
    reconciled: bool = False


@dataclass
class SyncOutcome:
    """How one tenant's sync ended (for logs and tests); `skipped` names why nothing was done."""

    tenant_id: str
    skipped: str | None = None
    refreshed: bool = False
    tables: list[TableOutcome] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(t.changed for t in self.tables)


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        config: SyncConfig | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._connections = connections
        self._tickets = tickets
        self._tokens = tokens
        self._records = records
        self._queue = queue
        self._config = config or SyncConfig()
        self._clock = clock

    @property
    def config(self) -> SyncConfig:
        return self._config

    # --- fan-out ---------------------------------------------------------------------------------

    async def enqueue_connected(self, reason: SyncReason = "timer") -> int:
        """One message per connected tenant; the number queued.

        Keeps going past a failed send so one bad moment does not starve the tenants after it,
        then raises, so the failure is visible on the timer's invocation.
        """
        requested_at = self._clock()
        queued = failed = 0
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
            batch.append(connection.tenant_id)
            if len(batch) >= ENQUEUE_CONCURRENCY:
                await flush()
        if batch:
            await flush()
        logger.info("Queued a %s sync for %d connected tenant(s)", reason, queued)
        if failed:
            raise SyncEnqueueFailed(f"{failed} of {queued + failed} sync messages could not be queued.")
        return queued

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

    async def _send(self, request: SyncRequest) -> None:
        await self._queue.send(request.model_dump_json(by_alias=True))

    # --- one tenant -----------------------------------------------------------------------------

    async def sync_tenant(self, request: SyncRequest) -> SyncOutcome:
        """Refresh the tenant's tokens if needed and pull its ticket states.

        Returns normally when there is nothing to do or the grant is dead (known conditions the
        message cannot fix by being retried). Raises on anything else, after recording it as the
        connection's `lastError`, so the host retries and finally poisons the message.
        """
        tenant_id = request.tenant_id
        outcome = SyncOutcome(tenant_id)
        started = self._clock()
        try:
            connection = await self._connections.update(tenant_id, self._lease(request, started))
        except _Skip as skip:
            outcome.skipped = skip.reason
            logger.info("Sync skipped: %s", skip.reason)
            return outcome
        if connection is None:
            outcome.skipped = "not configured"
            logger.info("Sync skipped: the tenant has no ServiceNow connection")
            return outcome
        try:
            await self._sync(connection, started, outcome)
        except ReauthorizationRequired:
            # AccessTokens has already set reauthorization_required and lastError.
            outcome.skipped = "reauthorization required"
            logger.warning("Sync stopped: the ServiceNow grant is dead; waiting for an admin to re-authorize")
            await self._release(tenant_id, {})
            return outcome
        except ConnectionNotReady as error:
            # Connected, yet no token set or client secret is stored: only re-authorizing fixes it.
            outcome.skipped = "reauthorization required"
            logger.warning("Sync stopped: %s", error.message)
            await self._release(
                tenant_id,
                {
                    "status": ConnectionStatus.REAUTHORIZATION_REQUIRED,
                    "last_error": f"{error.message} An admin must re-authorize the connection.",
                },
            )
            return outcome
        except Exception as error:
            message = error.message if isinstance(error, AppError) else "The sync failed unexpectedly."
            logger.warning("Sync failed (the message will be retried): %s", message)
            await self._release(tenant_id, {"last_error": f"Sync failed: {message}"}, best_effort=True)
            raise
        return outcome

    def _lease(self, request: SyncRequest, now: datetime) -> Callable[[Connection], dict[str, Any]]:
        def take(current: Connection) -> dict[str, Any]:
            if current.status != ConnectionStatus.CONNECTED:
                raise _Skip(f"the connection is {current.status.value}")
            if current.sync_lease_until is not None and current.sync_lease_until > now:
                raise _Skip("another sync of this tenant is running")
            if current.last_sync_at is not None and current.last_sync_at >= request.requested_at:
                raise _Skip("the tenant was synced after this request was made")
            return {"sync_lease_until": now + self._config.lease, "updated_at": now}

        return take

    async def _release(self, tenant_id: str, fields: dict[str, Any], *, best_effort: bool = False) -> None:
        try:
            await self._connections.update(
                tenant_id, lambda _: {**fields, "sync_lease_until": None, "updated_at": self._clock()}
            )
        except AppError:
            if not best_effort:
                raise
            logger.warning("Could not record the sync failure on the connection")

    async def _sync(self, connection: Connection, started: datetime, outcome: SyncOutcome) -> None:
        before = connection.access_token_expires_at
        tokens = await self._tokens.refresh_if_expiring(connection, self._config.refresh_within)
        outcome.refreshed = before is not None and tokens.access_token_expires_at != before
        if tokens.refresh_token_expires_at - started < self._config.refresh_token_warning:
            logger.warning(
                "The ServiceNow refresh token expires at %s: an admin must re-authorize before then",
                tokens.refresh_token_expires_at,
            )
        reconcile_all = (
            connection.last_reconciled_at is None
            or started - connection.last_reconciled_at >= self._config.reconcile_every
        )
        index = _LazyIndex(lambda: self._tickets.sync_index(connection.tenant_id))
        watermarks = dict(connection.watermarks)
        tables = self._config.tables
        for position, table in enumerate(tables):
            reconcile = reconcile_all or table not in watermarks
            table_outcome, marks = await self._sync_table(
                connection, table, watermarks, index, reconcile, started
            )
            outcome.tables.append(table_outcome)
            watermarks.update(marks)
            if not marks.get(table + SEEN_SUFFIX):
                watermarks.pop(table + SEEN_SUFFIX, None)
            if position < len(tables) - 1 and marks:
                # A checkpoint per table: a later table's failure does not repeat this one's work.
                await self._save_watermarks(connection, marks)
        reconciled_all = all(t.reconciled for t in outcome.tables)
        final = {t: watermarks[t] for t in (tables[-1], tables[-1] + SEEN_SUFFIX) if t in watermarks}

        def finish(current: Connection) -> dict[str, Any]:
            fields: dict[str, Any] = {
                "last_sync_at": self._clock(),
                "last_error": None,
                "sync_lease_until": None,
                "updated_at": self._clock(),
            }
            if current.instance_url == connection.instance_url:
                fields["watermarks"] = _merge_watermarks(current.watermarks, final, tables[-1])
                if reconciled_all:
                    fields["last_reconciled_at"] = started
            return fields

        await self._connections.update(connection.tenant_id, finish)
        logger.info(
            "Synced: %d state change(s), %d deletion(s) over %d page(s)%s",
            outcome.changed,
            sum(t.deleted for t in outcome.tables),
            sum(t.pages for t in outcome.tables),
            " (reconciled)" if reconciled_all else "",
        )

    async def _save_watermarks(self, connection: Connection, marks: dict[str, str]) -> None:
        table = next(key for key in marks if SEEN_SUFFIX not in key)

        def save(current: Connection) -> dict[str, Any]:
            if current.instance_url != connection.instance_url:
                return {}  # reconfigured to another instance meanwhile: these marks mean nothing there
            return {"watermarks": _merge_watermarks(current.watermarks, marks, table)}

        await self._connections.update(connection.tenant_id, save)

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
        mark = watermarks.get(table)
        seen = _parse_seen(watermarks.get(table + SEEN_SUFFIX)) if mark else {}
        clauses = [f"correlation_display={CORRELATION_DISPLAY}"]
        if mark and not reconcile:
            clauses.append(f"sys_updated_on>={mark}")
        query = "^".join([*clauses, "ORDERBYsys_updated_on", "ORDERBYsys_id"])
        newest, newest_seen = mark or "", dict(seen)
        listed: set[str] = set()
        async for page in self._records.query(
            connection, table, query, FIELDS, page_size=self._config.page_size
        ):
            outcome.pages += 1
            outcome.records += len(page)
            fresh: list[Record] = []
            for record in page:
                sys_id, updated = str(record.get("sys_id", "")), str(record.get("sys_updated_on", ""))
                state = str(record.get("state", ""))
                listed.add(sys_id)
                if updated > newest:
                    newest, newest_seen = updated, {}
                if updated == newest:
                    newest_seen[sys_id] = state
                if updated == mark and seen.get(sys_id) == state:
                    continue  # applied by an earlier run (same second as the watermark, same state)
                fresh.append(record)
            if fresh:
                outcome.changed += await self._apply(connection.tenant_id, table, fresh, await index.get())
        if reconcile:
            outcome.deleted = await self._reconcile(connection, table, listed, index, started)
        marks: dict[str, str] = {}
        if newest:
            marks[table] = newest
            if len(newest_seen) <= SEEN_LIMIT:
                marks[table + SEEN_SUFFIX] = _format_seen(newest_seen)
        return outcome, marks

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
                state_updated_at=_parse_glide(updated) or self._clock(),
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


class SyncEnqueueFailed(AppError):
    code = "sync_enqueue_failed"
    default_message = "Some sync messages could not be queued."


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


def _parse_glide(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, GLIDE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _parse_seen(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    seen: dict[str, str] = {}
    for item in value.split(","):
        sys_id, _, state = item.partition("=")
        if sys_id:
            seen[sys_id] = state
    return seen


def _format_seen(seen: dict[str, str]) -> str:
    return ",".join(f"{sys_id}={state}" for sys_id, state in sorted(seen.items()))


def _merge_watermarks(current: dict[str, str], marks: dict[str, str], table: str) -> dict[str, str]:
    """The stored watermarks with `table`'s moved forward, never back.

    Two workers could both finish (a lease that expired under a very slow run): the later
    watermark wins, and the seen-set goes with the watermark it belongs to.
    """
    merged = dict(current)
    new = marks.get(table)
    if new is None:
        return merged
    old = merged.get(table, "")
    seen_key = table + SEEN_SUFFIX
    if new > old:
        merged[table] = new
        if seen_key in marks:
            merged[seen_key] = marks[seen_key]
        else:
            merged.pop(seen_key, None)
    elif new == old:
        if seen_key in marks:
            both = {**_parse_seen(merged.get(seen_key)), **_parse_seen(marks[seen_key])}
            if len(both) <= SEEN_LIMIT:
                merged[seen_key] = _format_seen(both)
            else:
                merged.pop(seen_key, None)
        else:
            merged.pop(seen_key, None)
    return merged
