"""Token refresh and ticket state sync, one tenant at a time (the queue worker), fanned out by a timer.

Policy, in the order a sync applies it:

- **Fan-out.** The timer only lists connected tenants (one partition-spanning query on `Status`)
  and puts one message per tenant on `sync-requests`, carrying the row as listed (its properties
  and ETag: no secret, the row holds none); the queue worker syncs one tenant. A tenant's failure
  is its message's failure: the others never notice.
- **One worker per tenant.** The worker takes a lease on the connection row (ETag-conditional
  write): with the row the message carries, one write conditional on its ETag, and a read only
  when that write loses (the row changed since the listing); a message without one (`POST
  /api/sync`, a request put back) reads the row first (`sync_lease.py`). A second message for the
  same tenant (a manual sync while the timer's runs, a backlog)
  that finds the lease held is dropped when it was made before the running sync started (that
  run queries ServiceNow after the request: it covers it), and put back on the queue for 15 s
  later (`REQUEUE_DELAY_S`) when it was made after: the running sync may have read ServiceNow
  before the change the request is about. A message made before the start of the tenant's last
  successful sync is dropped too: it would only repeat that run's work.
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
- **Writes, then the watermark.** Our row is found by the record's `correlation_id` (our ticket
  id, the row's RowKey): no read of our rows. The changes of all tables are merged (`If-Match: *`:
  never a row made or brought back) in transactions of at most 100 rows of the tenant's partition.
  A transaction that fails because one of its rows does not exist (another tenant's record on a
  shared instance) writes nothing; the run then reads the tenant's ticket index once and writes
  only records whose table and sys_id are our row's and whose state differs from it, as the daily
  reconciliation always does (`sync_rows.py`, also why an unconditional merge never writes an
  older state over a newer one, and what writing without a read gives up). The watermarks (and
  the sets seen in their windows) are saved with the run's status, after the rows are written, so
  a crash in between only repeats work, it never skips any; when a later table fails, the rows
  read before are written and the earlier tables' watermarks saved with the failure.
- **Deletions and drift.** A deleted record never shows up in an incremental query, so every
  `reconcile_every` (default a day), and on the first sync of a table, the query leaves out the
  watermark and lists all of this connector's records; our tickets whose `sys_id` is missing from
  the listing are looked up once more by `sys_id` (so a record that merely lost its correlation
  is not mistaken for a deleted one) and the ones still missing are marked deleted. The same
  listing repairs any state a normal run missed. Normal runs stay within `tables +
  ceil(changed / 1000)` ServiceNow requests and, for a timer's message, `ceil(changed / 100) + 2`
  Table Storage requests (the transactions, the lease, the finish); the reconciliation costs
  `tables + ceil(tickets / 1000)` ServiceNow requests once a day, and a read of the ticket index.
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
- **Secure Score.** With the daily reconciliation, the run checks the tenant's tickets made for
  improvement actions against Secure Score (`remediation_check.py`: one `secureScores` request and
  the control profiles); on other runs, when the tenant turned the write-back on, it writes back
  the tickets whose state it changed (one read of the tenant's action tickets, then Graph only
  for a comment that changed). Both run under the lease, after the rows are written and before
  the status write; neither fails the sync, and a Graph 429 pauses only the tenant's Graph work.
  With the write-back off, a normal run makes no request more.
- **Housekeeping.** The timer also deletes OAuth states that expired over a day ago (at most
  1,000 a run).

One idea a module: `sync_fanout.py` (the timer, `POST /api/sync`, housekeeping), `sync_run.py`
(one tenant under its lease), `sync_lease.py` (the lease and the status writes, with no read when
the row is as expected), `sync_table.py` (one table: pull, next watermark), `sync_pull.py` (keyset
paging), `sync_marks.py` (watermarks and seen-sets), `sync_rows.py` (the state writes, by
correlation id), `sync_apply.py` (the ticket index, deletions, the instance's state labels),
`sync_config.py` (the numbers). `SyncService` here wires them for the functions, and the Secure
Score check (`remediation_check.py`) when it is given one.
"""

from __future__ import annotations

from shared.clock import SYSTEM_CLOCK, Clock
from shared.models import SyncQueued, SyncReason, SyncRequest
from shared.ports import (
    ConnectionStore,
    MessageQueue,
    OAuthStateStore,
    ServiceNowRecords,
    TicketStore,
    TokenRefresher,
)
from shared.services.remediation_check import RemediationCheck
from shared.services.sync_config import SyncConfig
from shared.services.sync_fanout import SyncFanout
from shared.services.sync_run import SyncOutcome, TenantSync


class SyncService:
    """The sync's entry points, built from its ports: the timer's fan-out and housekeeping
    (`sync_fanout.py`), `POST /api/sync`, and the queue worker's one tenant (`sync_run.py`)."""

    def __init__(
        self,
        *,
        connections: ConnectionStore,
        tickets: TicketStore,
        tokens: TokenRefresher,
        records: ServiceNowRecords,
        queue: MessageQueue,
        states: OAuthStateStore,
        config: SyncConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        remediation: RemediationCheck | None = None,
    ) -> None:
        config = config or SyncConfig()
        self._fanout = SyncFanout(
            connections=connections, queue=queue, states=states, config=config, clock=clock
        )
        self._tenant = TenantSync(
            connections=connections,
            tickets=tickets,
            tokens=tokens,
            records=records,
            queue=queue,
            config=config,
            clock=clock,
            remediation=remediation,
        )

    async def enqueue_connected(self, reason: SyncReason = "timer") -> int:
        return await self._fanout.enqueue_connected(reason)

    async def purge_expired_states(self) -> int:
        return await self._fanout.purge_expired_states()

    async def request_sync(self, tenant_id: str) -> SyncQueued:
        return await self._fanout.request_sync(tenant_id)

    async def sync_tenant(self, request: SyncRequest) -> SyncOutcome:
        return await self._tenant.sync_tenant(request)
