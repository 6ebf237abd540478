"""Tickets whose create ServiceNow has not confirmed: the `creating` row, the delayed message on
`ticket-creates` that gets it finished, and how such a row ends (`created` or `failed`).

The message is sent before the row is written: a `creating` row therefore always has a message
on its way. A message whose row was never written (the write failed, and the caller got 503)
finds no row and is dropped; the caller's retry with the key finishes the create as before.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.clock import Clock
from shared.errors import PreconditionFailed
from shared.models import PendingCreate
from shared.ports import MessageQueue, TicketStore
from shared.records import Ticket
from shared.services.idempotency_claims import ClaimKeeper, HeldClaim
from shared.services.ticket_content import with_record
from shared.services.ticket_record import RecordSpec
from shared.untrusted import escape_text

logger = logging.getLogger(__name__)

FAILURE_REASON_MAX = 500


class PendingCreates:
    def __init__(
        self, *, tickets: TicketStore, claims: ClaimKeeper, queue: MessageQueue, clock: Clock
    ) -> None:
        self._tickets = tickets
        self._claims = claims
        self._queue = queue
        self._clock = clock

    async def defer(
        self, key_hash: str, spec: RecordSpec, row: Ticket, *, until: datetime, round: int = 0
    ) -> Ticket:
        """Queue the ticket's message, invisible until `until`, then write `row` (`creating`) unless
        it is stored already. The stored row.

        Raises:
            UpstreamUnavailable: the queue or the table did not answer.
        """
        message = PendingCreate(
            tenant_id=row.tenant_id,
            key_hash=key_hash,
            ticket_id=row.ticket_id,
            table=row.type,
            fields=dict(spec.fields),
            round=round,
        )
        delay = max(1, math.ceil((until - self._clock.now()).total_seconds()))
        await self._queue.send(message.model_dump_json(by_alias=True), delay_s=delay)
        logger.info(
            "Ticket %s waits for ServiceNow to confirm its record; looked at again in %d s (round %d)",
            row.ticket_id,
            delay,
            round + 1,
        )
        return row if row.etag is not None else await self._add(row)

    async def finish(self, held: HeldClaim, row: Ticket, record: Mapping[str, Any]) -> Ticket:
        """`row` completed with ServiceNow's record (added, or replacing the `creating` one), then
        the claim marked completed. The stored row."""
        now = self._clock.now()
        if row.etag is not None:
            stored = await self._replace(with_record(row, record, at=now))
        else:
            stored = await self._add(with_record(row, record, at=now))
            if stored.status == "creating":  # stored meanwhile by a request that answered 202
                stored = await self._replace(with_record(stored, record, at=now))
        await self._claims.mark_completed(held.claim)
        return stored

    async def fail(self, held: HeldClaim, row: Ticket, reason: str) -> Ticket:
        """The `creating` row ends `failed` with `reason`, and the claim is completed, so the key
        keeps answering with this ticket and never creates. The stored row."""
        failed = row.model_copy(
            update={"status": "failed", "failure_reason": escape_text(reason, limit=FAILURE_REASON_MAX)}
        )
        stored = await self._replace(failed)
        await self._claims.mark_completed(held.claim)
        logger.warning("Ticket %s failed: %s", row.ticket_id, stored.failure_reason)
        return stored

    async def _add(self, ticket: Ticket) -> Ticket:
        try:
            return await self._tickets.add(ticket)
        except PreconditionFailed:
            existing = await self._tickets.get(ticket.tenant_id, ticket.ticket_id)
            if existing is None:
                raise
            return existing  # a takeover stored it first

    async def _replace(self, ticket: Ticket) -> Ticket:
        try:
            return await self._tickets.replace(ticket)
        except PreconditionFailed:
            current = await self._tickets.get(ticket.tenant_id, ticket.ticket_id)
            if current is None or current.status == "creating":
                raise
            return current  # whoever took the claim over finished it first
