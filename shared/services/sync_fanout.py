"""The sync's fan-out: the timer puts one message per connected tenant on the queue and deletes
long-expired OAuth states and idempotency claims; `POST /api/sync` puts one for the caller's tenant
(policy: `syncing.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime

from shared.clock import Clock
from shared.errors import AppError, ConnectionNotReady, ReauthorizationRequired, SyncEnqueueFailed
from shared.models import ConnectionStatus, SyncQueued, SyncReason, SyncRequest
from shared.ports import ConnectionStore, IdempotencyClaims, MessageQueue, OAuthStateStore
from shared.services.sync_config import SyncConfig

logger = logging.getLogger(__name__)

ENQUEUE_CONCURRENCY = 32


async def send_request(queue: MessageQueue, request: SyncRequest, *, delay_s: int = 0) -> None:
    await queue.send(request.model_dump_json(by_alias=True), delay_s=delay_s)


async def purge_expired_claims(claims: IdempotencyClaims, *, before: datetime, limit: int) -> int:
    """Delete idempotency claims completed before `before` (at most `limit`; never one in
    progress); never raises. Housekeeping on the timer, beside the OAuth states."""
    return await _purge(
        claims.delete_expired(before, limit=limit),
        what="idempotency claims",
        done="idempotency claim(s) completed",
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
    failed: int = 0
    deferred: int = 0  # ServiceNow asked us (Retry-After) to leave the tenant alone for now


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

        Keeps going past a failed send so one bad moment does not starve the tenants after it,
        then raises, so the failure is visible on the timer's invocation.
        """
        requested_at = self._clock.now()
        tally = _Tally()
        batch: list[SyncRequest] = []
        async for connection in self._connections.with_status(ConnectionStatus.CONNECTED):
            if connection.sync_not_before is not None and connection.sync_not_before > requested_at:
                tally.deferred += 1
                continue
            batch.append(
                SyncRequest(tenant_id=connection.tenant_id, reason=reason, requested_at=requested_at)
            )
            if len(batch) >= ENQUEUE_CONCURRENCY:
                await self._send_all(batch, tally)
                batch = []
        await self._send_all(batch, tally)
        logger.info(
            "Queued a %s sync for %d connected tenant(s)%s",
            reason,
            tally.queued,
            f"; {tally.deferred} left alone until ServiceNow's Retry-After has passed"
            if tally.deferred
            else "",
        )
        if tally.failed:
            total = tally.queued + tally.failed
            raise SyncEnqueueFailed(f"{tally.failed} of {total} sync messages could not be queued.")
        return tally.queued

    async def _send_all(self, requests: list[SyncRequest], tally: _Tally) -> None:
        results = await asyncio.gather(
            *(send_request(self._queue, request) for request in requests), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                tally.failed += 1
                logger.warning("Could not queue a sync: %s", result)
            else:
                tally.queued += 1

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
        connection = await self._connections.get(tenant_id)
        if connection is None or connection.status == ConnectionStatus.PENDING_AUTHORIZATION:
            raise ConnectionNotReady()
        if connection.status == ConnectionStatus.REAUTHORIZATION_REQUIRED:
            raise ReauthorizationRequired()
        request = SyncRequest(tenant_id=tenant_id, reason="manual", requested_at=self._clock.now())
        await send_request(self._queue, request)
        logger.info("Queued a manual sync")
        return SyncQueued(requested_at=request.requested_at)
