"""Tickets whose create ServiceNow has not confirmed: the `creating` row, the delayed message on
`ticket-creates` that gets it finished, and how such a row ends (`created` or `failed`).

The message is sent before the row is written, and carries the row: a message whose row was never
written (the write failed and the caller got 503, or the request died in between) writes it when
it is worked on (`restore`), so no record ServiceNow may have made is left without its ticket.

A `creating` row always has a message on its way, but a message can still be lost: the queue
refused the next one, or the worker failed on it until it went to `ticket-creates-poison` (a
setting that fails validation, a bug). Every round writes the claim, so a claim in progress that
nobody wrote for `sweep_after` has no message coming; the timer's `sweep` queues one again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.clock import Clock
from shared.errors import AppError, PreconditionFailed
from shared.models import PendingCreate, PendingTicket
from shared.ports import MessageQueue, TicketStore
from shared.records import IdempotencyRecord, Ticket
from shared.services.idempotency_claims import ClaimKeeper, HeldClaim
from shared.services.ticket_content import row_content, with_record
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
        self,
        key_hash: str,
        spec: RecordSpec,
        row: Ticket,
        *,
        until: datetime,
        round: int = 0,
        client_id: str | None = None,
    ) -> Ticket:
        """Queue the ticket's message, invisible until `until`, then write `row` (`creating`) unless
        it is stored already. The stored row. `client_id`: the connection's client the ticket was
        made with.

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
            client_id=client_id,
            ticket=_pending_ticket(row),
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

    async def restore(self, message: PendingCreate) -> Ticket | None:
        """The `creating` row the message carries, written because the request that queued the
        message did not (or the row already stored); None for a message that carries none."""
        if message.ticket is None:
            return None
        logger.warning("Ticket %s had no row: written from its message", message.ticket_id)
        return await self._add(_row_of(message, message.ticket))

    async def sweep(self, *, written_before: datetime, created_after: datetime, limit: int) -> int:
        """Queue a message again for each `creating` ticket whose claim nobody wrote since
        `written_before` (claims made after `created_after`, at most `limit`); how many. Never
        raises: a failure is logged and the next run goes on."""
        try:
            stale = await self._claims.stale(
                written_before=written_before, created_after=created_after, limit=limit
            )
        except AppError as error:
            logger.warning("Could not list the claims of pending ticket creates: %s", error.message)
            return 0
        queued = 0
        for claim in stale:
            try:
                queued += await self._sweep_one(claim)
            except AppError as error:  # the next run sees it again
                logger.warning("Could not queue ticket %s again: %s", claim.ticket_id, error.message)
        if queued:
            logger.warning("Queued %d ticket create(s) whose message was lost", queued)
        return queued

    async def _sweep_one(self, claim: IdempotencyRecord) -> int:
        if claim.lease_until is not None and claim.lease_until > self._clock.now():
            return 0  # someone is at it
        row = await self._tickets.get(claim.tenant_id, claim.ticket_id)
        if row is not None and row.status != "creating":
            await self._claims.mark_completed(claim)  # the ticket was stored, its claim not marked
            return 0
        # Written now, the claim leaves this query for `sweep_after`: the next runs go on to others.
        if not await self._claims.touch(claim) or row is None:
            return 0  # no ticket (the caller got 503): the key's next request finishes the create
        await self.defer(claim.key_hash, row_content(row), row, until=self._clock.now())
        return 1

    async def finish(self, held: HeldClaim, row: Ticket, record: Mapping[str, Any]) -> Ticket:
        """`row` completed with ServiceNow's record (added, or replacing the `creating` one). The
        stored row. The claim is marked completed only when the sweep watches it (deferred, or its
        row was `creating`): for a create that ended in its request the row alone says it is done,
        and one write fewer is what keeps a warm create at two."""
        now = self._clock.now()
        watched = held.claim.deferred or row.etag is not None
        if row.etag is not None:
            stored = await self._replace(with_record(row, record, at=now))
        else:
            stored = await self._add(with_record(row, record, at=now))
            if stored.status == "creating":  # stored meanwhile by a request that answered 202
                watched = True
                stored = await self._replace(with_record(stored, record, at=now))
        if watched:
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


def _pending_ticket(row: Ticket) -> PendingTicket:
    return PendingTicket(
        instance_url=row.instance_url,
        name=row.name,
        description=row.description,
        priority=row.priority,
        due_date=row.due_date,
        recommendation_source=row.recommendation_source,
        recommendation_category=row.recommendation_category,
        improvement_action_id=row.improvement_action_id,
        improvement_action_link=row.improvement_action_link,
        created_by=row.created_by,
        created_by_name=row.created_by_name,
        created_at=row.created_at,
    )


def _row_of(message: PendingCreate, ticket: PendingTicket) -> Ticket:
    return Ticket(
        tenant_id=message.tenant_id,
        ticket_id=message.ticket_id,
        type=message.table,
        sys_id="",
        number="",
        **ticket.model_dump(exclude={"created_at"}),
        created_at=ticket.created_at,
        state="",
        state_updated_at=ticket.created_at,
        status="creating",
    )
