"""The sync's fan-out: the timer puts one message per connected tenant on the queue and deletes
long-expired OAuth states and idempotency claims; `POST /api/sync` puts one for the caller's tenant
(policy: `syncing.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime

from shared import telemetry
from shared.clock import Clock
from shared.errors import (
    AppError,
    SyncEnqueueFailed,
    UpstreamUnavailable,
)
from shared.models import ConnectionStatus, SyncQueued, SyncReason, SyncRequest
from shared.ports import ConnectionStore, IdempotencyClaims, MessageQueue, OAuthStateStore
from shared.records import REFRESH_TOKEN_WARNING, usable_connection
from shared.services.sync_config import SyncConfig
from shared.services.sync_lease import listed_row

logger = logging.getLogger(__name__)

ENQUEUE_CONCURRENCY = 32  # sends in flight at once
# The queue client already retries a request a few times; these attempts ride out a longer moment
# (a throttled account) without holding the timer long: 0.5 s then 1 s.
SEND_ATTEMPTS = 3
# The connections the listing skips, counted apart for the connections gauge.
UNLISTED_STATUSES = (ConnectionStatus.PENDING_AUTHORIZATION, ConnectionStatus.REAUTHORIZATION_REQUIRED)
SEND_BACKOFF_S = 0.5


async def send_request(queue: MessageQueue, request: SyncRequest, *, delay_s: int = 0) -> None:
    await queue.send(request.model_dump_json(by_alias=True, exclude_none=True), delay_s=delay_s)


async def purge_expired_claims(claims: IdempotencyClaims, *, before: datetime, limit: int) -> int:
    """Delete idempotency claims made before `before` (at most `limit`); never raises.
    Housekeeping on the timer, beside the OAuth states."""
    return await _purge(
        claims.delete_expired(before, limit=limit),
        what="idempotency claims",
        done="idempotency claim(s) made",
        before=before,
        limit=limit,
    )


async def _purge(deletion: Awaitable[int], *, what: str, done: str, before: datetime, limit: int) -> int:
    """Run one bounded deletion; a failure is logged and the next run tries again."""
    try:
        deleted = await deletion
    except AppError as error:
        logger.warning("Could not delete expired %s: %s", what, error.message)
        return 0
    if deleted:
        logger.info(
            "Deleted %d %s before %s%s",
            deleted,
            done,
            before.isoformat(),
            " (the limit of one run; the next run goes on)" if deleted >= limit else "",
        )
    return deleted


@dataclass
class _Tally:
    queued: int = 0
    retried: int = 0  # sends that failed and went out again
    deferred: int = 0  # ServiceNow asked us (Retry-After) to leave the tenant alone for now
    failed: list[str] = field(default_factory=list)  # tenants whose every attempt failed
    late: int = 0  # tenants not sent: the run's deadline had passed
    listed: int = 0  # connected tenants the listing found
    expiring: int = 0  # of those, refresh tokens expiring within REFRESH_TOKEN_WARNING


class SyncFanout:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        queue: MessageQueue,
        states: OAuthStateStore,
        config: SyncConfig,
        clock: Clock,
    ) -> None:
        self._connections = connections
        self._queue = queue
        self._states = states
        self._config = config
        self._clock = clock

    async def enqueue_connected(self, reason: SyncReason = "timer") -> int:
        """One message per connected tenant (but those ServiceNow asked us to leave alone for now);
        the number queued.

        A timer invocation is not retried by the host, so a tenant missed here waits a whole period:
        a failed send is retried (`SEND_ATTEMPTS`, backing off), a tenant still not queued is logged
        by id, the tenants after it are still sent, and the run then raises `SyncEnqueueFailed` so
        the invocation shows as failed. `ENQUEUE_CONCURRENCY` senders take tenants from the listing
        as its pages arrive, so listing and sending overlap. Nothing is sent after
        `SyncConfig.fanout_deadline`: the tenants left are counted, and the next run queues them.
        """
        requested_at = self._clock.now()
        tally = _Tally()
        deadline = requested_at + self._config.fanout_deadline
        pending: asyncio.Queue[SyncRequest | None] = asyncio.Queue(maxsize=ENQUEUE_CONCURRENCY)
        senders = [
            asyncio.create_task(self._sender(pending, tally, deadline)) for _ in range(ENQUEUE_CONCURRENCY)
        ]
        listing_error: Exception | None = None
        try:
            await self._list_due(pending, tally, reason, requested_at)
        except Exception as error:  # the tenants listed so far are still sent
            listing_error = error
        except BaseException:
            for sender in senders:
                sender.cancel()
            raise
        for _ in senders:
            await pending.put(None)
        await asyncio.gather(*senders)
        self._report(tally, reason)
        if listing_error is not None:
            raise listing_error
        telemetry.connections_listed(ConnectionStatus.CONNECTED, tally.listed, tally.expiring)
        await self._count_unlisted()
        if tally.failed or tally.late:
            total = tally.queued + len(tally.failed) + tally.late
            named = f" (tenants {', '.join(tally.failed[:5])}{', ...' if len(tally.failed) > 5 else ''})"
            raise SyncEnqueueFailed(
                f"{len(tally.failed) + tally.late} of {total} sync messages could not be queued"
                f"{named if tally.failed else ''}"
                f"{f'; {tally.late} not tried before the run deadline' if tally.late else ''}."
            )
        return tally.queued

    async def _list_due(
        self,
        pending: asyncio.Queue[SyncRequest | None],
        tally: _Tally,
        reason: SyncReason,
        requested_at: datetime,
    ) -> None:
        async for connection in self._connections.with_status(ConnectionStatus.CONNECTED):
            tally.listed += 1
            expires = connection.refresh_token_expires_at
            if expires is not None and expires - requested_at < REFRESH_TOKEN_WARNING:
                tally.expiring += 1
            if connection.sync_not_before is not None and connection.sync_not_before > requested_at:
                tally.deferred += 1
                continue
            # The row goes with the message: the worker takes its lease without reading it first.
            request = SyncRequest(
                tenant_id=connection.tenant_id,
                reason=reason,
                requested_at=requested_at,
                row=listed_row(connection),
            )
            await pending.put(request)

    async def _count_unlisted(self) -> None:
        """The connections gauge for the statuses the listing skips, with telemetry on only: one
        query each, over the few rows that wait for an admin (a failure costs the gauge, not the run)."""
        if not telemetry.enabled():
            return
        for status in UNLISTED_STATUSES:
            try:
                count = 0
                async for _ in self._connections.with_status(status):
                    count += 1
            except AppError as error:
                logger.warning("Could not count %s connections: %s", status.value, error.message)
                continue
            telemetry.connections_counted(status, count)

    async def _sender(
        self, pending: asyncio.Queue[SyncRequest | None], tally: _Tally, deadline: datetime
    ) -> None:
        while (request := await pending.get()) is not None:
            if self._clock.now() >= deadline:
                tally.late += 1  # the listing goes on; nothing more is sent
            elif await self._send_with_retries(request, tally, deadline):
                tally.queued += 1
            else:
                tally.failed.append(request.tenant_id)

    async def _send_with_retries(self, request: SyncRequest, tally: _Tally, deadline: datetime) -> bool:
        """True once the message is sent; False (logged with the tenant) when every attempt failed
        or the deadline cut one. A retry, or a cut send, may duplicate a message whose send went
        through; the worker drops a duplicate (its lease, `LastSyncStartedAt`)."""
        for attempt in range(1, SEND_ATTEMPTS + 1):
            left = (deadline - self._clock.now()).total_seconds()
            try:
                # The clock sets the deadline; only a timer can end a send that hangs.
                async with asyncio.timeout(max(left, 0.0)):
                    await send_request(self._queue, request)
                return True
            except TimeoutError:
                last: Exception = TimeoutError("the run's deadline passed while sending")
                break
            except UpstreamUnavailable as error:
                last = error
                if attempt < SEND_ATTEMPTS and self._clock.now() < deadline:
                    tally.retried += 1
                    await self._clock.sleep(SEND_BACKOFF_S * 2 ** (attempt - 1))
            except Exception as error:  # not a moment of unavailability: retrying will not help
                last = error
                break
        logger.error(
            "Could not queue a sync for tenant %s (%d attempt(s)): %s",
            request.tenant_id,
            attempt,
            last,
        )
        return False

    def _report(self, tally: _Tally, reason: SyncReason) -> None:
        logger.info(
            "Queued a %s sync for %d connected tenant(s)%s%s%s%s",
            reason,
            tally.queued,
            f"; {tally.retried} send(s) retried" if tally.retried else "",
            f"; {len(tally.failed)} could not be queued" if tally.failed else "",
            f"; {tally.late} left for the next run (the deadline passed)" if tally.late else "",
            f"; {tally.deferred} left alone until ServiceNow's Retry-After has passed"
            if tally.deferred
            else "",
        )

    async def purge_expired_states(self) -> int:
        """Delete OAuth states that expired over `state_retention` ago (bounded); never raises.

        Housekeeping on the timer: a failure is logged and the next run tries again.
        """
        cutoff = self._clock.now() - self._config.state_retention
        limit = self._config.state_purge_limit
        return await _purge(
            self._states.delete_expired(cutoff, limit=limit),
            what="OAuth states",
            done="OAuth state(s) that expired",
            before=cutoff,
            limit=limit,
        )

    async def request_sync(self, tenant_id: str) -> SyncQueued:
        """POST /api/sync: queue this tenant's sync now (only a connected tenant can sync)."""
        usable_connection(await self._connections.get(tenant_id))
        request = SyncRequest(tenant_id=tenant_id, reason="manual", requested_at=self._clock.now())
        await send_request(self._queue, request)
        logger.info("Queued a manual sync")
        return SyncQueued(requested_at=request.requested_at)
