"""The sync's writes to the tenant's connection row: the lease that makes one worker the tenant's
only sync, and the status writes that end a run (policy: `syncing.py`).

Each write is decided on the row it replaces and is conditional on that row's ETag, so a write
never rests on a row someone changed meanwhile: when the condition fails, the row is read again,
decided again and written again (`ConnectionStore.update`).

Most runs read the row not at all:

- **The lease.** The timer's message carries the row as the fan-out listed it, with its ETag
  (`listed_row`). The lease is decided on that row and written with one replace conditional on
  its ETag. If the row is unchanged since the listing, that is the very decision a read would
  have led to (the row is the same, the clock is read now); if it changed, the write fails
  (PreconditionFailed) and nothing was written, so the ordinary read-decide-write follows. A
  refusal decided on the listed row is not trusted (the row may have moved on since): it is
  decided again on a read. A message without a row (`POST /api/sync`, a request put back on the
  queue) reads the row, as every message did before.
- **The end of the run.** The lease write answers with the row as written and its new ETag; the
  success or failure write is decided on that row and conditional on that ETag. Nobody wrote the
  row during the run (the usual case): the decision is the one a read would have given. Anybody
  did (a token refresh, a grant found dead, a re-authorization, another worker after the lease ran
  out): the write fails and is decided again on a read, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from shared.errors import PreconditionFailed
from shared.models import ConnectionStatus, SyncRequest
from shared.ports import ConnectionStore
from shared.records import Connection
from shared.sync_models import ListedRow

logger = logging.getLogger(__name__)

Change = Callable[[Connection], dict[str, Any]]


def listed_row(connection: Connection) -> ListedRow | None:
    """What the timer's message carries of the row it listed (None without an ETag)."""
    if not connection.etag:
        return None
    properties = connection.model_dump(mode="json", by_alias=True, exclude_none=True)
    return ListedRow(etag=connection.etag, properties=properties)


def listed_connection(request: SyncRequest) -> Connection | None:
    """The row the message carries, with its ETag; None when it carries none (or none usable)."""
    if request.row is None:
        return None
    try:
        connection = Connection.model_validate(request.row.properties)
    except ValidationError:
        logger.warning("The sync request's connection row is not one: reading the row instead")
        return None
    if connection.tenant_id != request.tenant_id:
        return None
    return connection.model_copy(update={"etag": request.row.etag})


@dataclass(frozen=True)
class Refusal:
    """Why a run does not start; `again`: put its request back on the queue, for after the running sync."""

    reason: str
    again: bool = False


class LeaseDecision:
    """The lease write's change: take the lease, or note why not. Decided on every row it is given,
    so a write that lost a race is decided again on the row that won it."""

    def __init__(self, request: SyncRequest, now: datetime, duration: timedelta) -> None:
        self._request = request
        self._now = now
        self._duration = duration
        self.refusal: Refusal | None = None

    def __call__(self, current: Connection) -> dict[str, Any]:
        self.refusal = self._refusal(current)
        if self.refusal is not None:
            return {}
        return {"sync_lease_until": self._now + self._duration, "updated_at": self._now}

    def _refusal(self, current: Connection) -> Refusal | None:
        if current.status != ConnectionStatus.CONNECTED:
            return Refusal(f"the connection is {current.status.value}")
        running_until = current.sync_lease_until
        if running_until is not None and running_until > self._now:
            if self._request.requested_at > running_until - self._duration:
                # Asked for after that run started: it may have read ServiceNow too early.
                return Refusal("another sync of this tenant is running; asked again for after it", again=True)
            return Refusal("another sync of this tenant is running")
        if current.sync_not_before is not None and current.sync_not_before > self._now:
            return Refusal(f"ServiceNow asked us to wait until {current.sync_not_before.isoformat()}")
        started = current.last_sync_started_at
        if started is not None and started >= self._request.requested_at:
            return Refusal("the tenant was synced after this request was made")
        return None


async def take_lease(
    connections: ConnectionStore, request: SyncRequest, now: datetime, duration: timedelta
) -> Connection | Refusal | None:
    """The row with this run's lease on it, or why the run does not start (None: no row)."""
    lease = LeaseDecision(request, now, duration)
    listed = listed_connection(request)
    if listed is not None:
        fields = lease(listed)
        if fields:
            try:
                return await connections.replace(listed.model_copy(update=fields))
            except PreconditionFailed:
                logger.info("The connection row changed since the timer listed it; reading it")
    run = await connections.update(request.tenant_id, lease)
    return lease.refusal or run


async def write_status(connections: ConnectionStore, run: Connection, change: Change) -> None:
    """Apply `change` to the row: decided on `run` (the row as this run's lease write left it) and
    written conditional on its ETag; decided again on a read when someone wrote the row since."""
    fields = change(run)
    if fields and run.etag:
        try:
            await connections.replace(run.model_copy(update=fields))
            return
        except PreconditionFailed:
            pass  # written by someone else during the run: decide on the row as it is now
    await connections.update(run.tenant_id, change)
